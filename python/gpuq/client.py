"""Client, Queue and Loan: the Python face of libgpuqclient."""

from __future__ import annotations

import ctypes
import dataclasses
import errno as _errno
import math
import os
import threading
import time
import weakref
from typing import Iterable, List, Optional, Sequence, Union

from . import _lib
from .errors import ERRORS, Error, check, error

_ETIMEDOUT = ERRORS["GPUQ_ETIMEDOUT"]
_EMSGSIZE = -_errno.EMSGSIZE

# A wait longer than this is made of several library calls, so that Ctrl-C
# (and other signal handlers) run at least this often: a ctypes call cannot
# be interrupted.
_CHUNK_MS = 100
_U64 = 1 << 64

# ---------------------------------------------------------------------------
# fork: a client must not be used, or closed, in a child (docs/api.md
# "fork"); the child would talk on the parent's socket as the parent.
# ---------------------------------------------------------------------------
_GEN = [0]


_CLIENTS = weakref.WeakSet()


def _after_fork():
    # Inherited handles are dead to the child; give them fresh locks so
    # that a lock some other parent thread held at fork() cannot hang it
    # before it is told so.
    _GEN[0] += 1
    for c in list(_CLIENTS):
        lk = threading.RLock()
        c._lock = c._st.lock = lk
        for q in list(c._queues):
            q._lock = q._st.lock = lk


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class _State:
    """A C handle, shared with its finalizer (which must not hold the
    Python object)."""

    __slots__ = ("ptr", "gen", "lock", "why")

    def __init__(self, ptr, lock):
        self.ptr = ptr
        self.gen = _GEN[0]
        self.lock = lock
        self.why = ""


def _release(free, st):
    # Finalizer and close(): free the handle once, in the process that
    # made it, holding the client's lock (GC can run in any thread).
    if st.ptr is None or st.gen != _GEN[0]:
        st.ptr = None
        return
    with st.lock:
        if st.ptr is not None:
            free(st.ptr)
            st.ptr = None


def _ms(timeout):
    """Seconds (None: forever) -> the library's milliseconds (-1: forever)."""
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be None or >= 0 seconds")
    ms = math.ceil(timeout * 1000.0)
    return int(min(ms, 2**31 - 1))


def _chunks(timeout):
    """Per-call timeouts (ms) that add up to timeout (seconds)."""
    total = _ms(timeout)
    if 0 <= total <= _CHUNK_MS:
        yield total
        return
    if total < 0:
        while True:
            yield _CHUNK_MS
    end = time.monotonic() + total / 1000.0
    while True:
        left = math.ceil((end - time.monotonic()) * 1000.0)
        if left <= 0:
            return
        yield int(min(left, _CHUNK_MS))


def _u64(v, what):
    v = int(v)
    if not 0 <= v < _U64:
        raise ValueError("%s must be in 0 .. 2**64-1, got %d" % (what, v))
    return v


# ---------------------------------------------------------------------------
# Payloads: anything with the buffer protocol, without a copy where the
# memory is contiguous.
# ---------------------------------------------------------------------------
class _Py_buffer(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


try:  # CPython: borrow the address of a read-only buffer for one call.
    _GetBuffer = ctypes.pythonapi.PyObject_GetBuffer
    _GetBuffer.argtypes = [ctypes.py_object, ctypes.POINTER(_Py_buffer),
                           ctypes.c_int]
    _GetBuffer.restype = ctypes.c_int
    _ReleaseBuffer = ctypes.pythonapi.PyBuffer_Release
    _ReleaseBuffer.argtypes = [ctypes.POINTER(_Py_buffer)]
    _ReleaseBuffer.restype = None
except (AttributeError, OSError):  # pragma: no cover (not CPython)
    _GetBuffer = None


def _payload(data):
    """(arg, nbytes, release): arg is what to pass as `const void *` (bytes,
    a ctypes array over the caller's memory, or an address), release is
    None or a function to call once the library call returned."""
    if type(data) is bytes:
        return data, len(data), None
    try:
        m = memoryview(data)
    except (TypeError, ValueError, NotImplementedError):
        # numpy dtypes the buffer protocol cannot express (datetime64, ...)
        ai = getattr(data, "__array_interface__", None)
        if ai is None:
            raise TypeError("payload must be bytes-like (buffer protocol), "
                            "not %s" % type(data).__name__) from None
        if ai.get("strides") is not None:
            b = bytes(data.tobytes())
            return b, len(b), None
        return ai["data"][0], int(data.nbytes), None
    n = m.nbytes
    if n == 0:
        return b"", 0, None
    if not m.c_contiguous:
        b = m.tobytes()  # strided: one copy, in C order
        return b, len(b), None
    if not m.readonly:
        # from_buffer asks for a plain byte buffer: any format, any shape
        return (ctypes.c_char * n).from_buffer(m), n, None
    if _GetBuffer is None:  # pragma: no cover
        b = m.tobytes()
        return b, len(b), None
    view = _Py_buffer()
    _GetBuffer(m, ctypes.byref(view), 0)
    return view.buf, n, lambda: _ReleaseBuffer(ctypes.byref(view))


def _address(arg):
    if isinstance(arg, int):
        return arg
    if isinstance(arg, bytes):
        return ctypes.cast(ctypes.c_char_p(arg), ctypes.c_void_p).value
    return ctypes.addressof(arg)


def _writable(out):
    m = memoryview(out)
    if m.readonly or not m.c_contiguous:
        raise TypeError("out must be a writable, C-contiguous buffer")
    n = m.nbytes
    if n == 0:
        return None, 0
    return (ctypes.c_char * n).from_buffer(m), n


# ---------------------------------------------------------------------------
# Plain records
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """gpuq_queue_info: fixed properties of an attached queue."""
    name: str
    capacity: int
    slot_bytes: int
    result_bytes: int
    cq_capacity: int
    handler: str
    backend: str
    broker_epoch: int
    ordered: bool
    rings: int
    max_attempts: int


@dataclasses.dataclass(frozen=True)
class Stats:
    """gpuq_stats: the queue's counters (all clients), read from shared
    memory one at a time (not an atomic snapshot)."""
    enqueued: int
    completed: int
    retried: int
    dead_lettered: int
    dlq_pending: int
    reclaimed: int
    full_events: int
    depth: int
    capacity: int
    clients: int
    heartbeat_age_ns: int


@dataclasses.dataclass(frozen=True)
class Completion:
    """One completed message, as Queue.poll() reports it.  status is 0, or
    ERRORS["GPUQ_EHANDLER"] when the handler failed every attempt (the
    message was dead-lettered and data is empty)."""
    id: int
    status: int
    data: bytes
    attempts: int
    worker: int
    seq: int

    @property
    def ok(self) -> bool:
        return self.status == 0

    def raise_for_status(self) -> "Completion":
        """Raise the status as an exception (HandlerFailed) if it is not 0."""
        if self.status:
            raise error(self.status)
        return self


def _info(ci):
    return QueueInfo(
        name=ci.name.decode(errors="replace"), capacity=ci.capacity,
        slot_bytes=ci.slot_bytes, result_bytes=ci.result_bytes,
        cq_capacity=ci.cq_capacity,
        handler=ci.handler.decode(errors="replace"),
        backend=ci.backend.decode(errors="replace"),
        broker_epoch=ci.broker_epoch, ordered=bool(ci.ordered),
        rings=ci.rings, max_attempts=ci.max_attempts)


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------
class Client:
    """A connection to a broker (gpuq_client).

    Use as a context manager, or call close().  Closing the client closes
    every queue opened through it.  A client and its queues may be used from
    several threads (calls are serialised by a lock); for parallel enqueue
    make one client per thread.  After fork() the child must connect anew:
    inherited clients raise RuntimeError there and are never closed by it.
    """

    def __init__(self, socket: Union[str, bytes, os.PathLike, None] = None):
        self._lib = lib = _lib.load()
        path = None if socket is None else os.fsencode(socket)
        h = ctypes.c_void_p()
        check(lib.gpuq_connect(path, ctypes.byref(h)))
        self._lock = threading.RLock()
        self._st = _State(h.value, self._lock)
        self._queues = weakref.WeakSet()
        self._fin = weakref.finalize(self, _release, lib.gpuq_disconnect,
                                     self._st)
        self.socket = socket
        _CLIENTS.add(self)

    def _ptr(self):
        st = self._st
        if st.ptr is None:
            raise ValueError("gpuq client is closed")
        if st.gen != _GEN[0]:
            raise RuntimeError("gpuq client was made before fork(); "
                               "connect again in the child process")
        return st.ptr

    def open(self, name: str) -> "Queue":
        """Attach to the queue called name (gpuq_open)."""
        if isinstance(name, str):
            name = name.encode()
        with self._lock:
            c = self._ptr()
            q = ctypes.c_void_p()
            check(self._lib.gpuq_open(c, name, ctypes.byref(q)))
            try:
                queue = Queue(self, q.value)
            except BaseException:
                self._lib.gpuq_close(q.value)
                raise
            self._queues.add(queue)
            return queue

    def close(self) -> None:
        """Close every queue opened through this client, then disconnect.
        Idempotent."""
        for q in list(self._queues):
            q.close()
        self._fin()

    @property
    def closed(self) -> bool:
        return self._st.ptr is None

    def __enter__(self) -> "Client":
        self._ptr()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self):
        return "<gpuq.Client socket=%r%s>" % (
            self.socket, " closed" if self.closed else "")


def connect(socket: Union[str, bytes, os.PathLike, None] = None) -> Client:
    """Connect to the broker at socket (None: $GPUQ_SOCKET, or the default
    that gpuq.default_socket() returns)."""
    return Client(socket)


# ---------------------------------------------------------------------------
# Queue
# ---------------------------------------------------------------------------
class Queue:
    """An attached queue (gpuq_queue).  Made by Client.open().

    Timeouts are in seconds: 0 means do not wait, None means wait as long
    as it takes (in steps of 100 ms, so Ctrl-C works).  Message ids are per
    handle: 0, 1, 2, ... in the order messages were enqueued through it.
    """

    def __init__(self, client: Client, ptr: int):
        self._client = client
        self._lib = lib = client._lib
        self._lock = client._lock
        ci = _lib.gpuq_queue_info()
        check(lib.gpuq_queue_info_get(ptr, ctypes.byref(ci)))
        self._info = _info(ci)
        self._st = _State(ptr, client._lock)
        self._fin = weakref.finalize(self, _release, lib.gpuq_close, self._st)
        self._idv = ctypes.c_uint64()
        self._lenv = ctypes.c_size_t()
        self._res = ctypes.create_string_buffer(max(ci.result_bytes, 1))
        self._comp = None
        self._loan = None

    # -- plumbing ----------------------------------------------------------
    def _ptr(self):
        st = self._st
        if st.ptr is None:
            raise ValueError("gpuq queue %r is closed%s" % (self._info.name,
                                                            st.why))
        if st.gen != _GEN[0]:
            raise RuntimeError("gpuq queue was opened before fork(); "
                               "connect again in the child process")
        return st.ptr

    def close(self) -> None:
        """Detach (gpuq_close).  Unread results are given up; an open loan
        is abandoned (the broker reclaims its slots).  Idempotent."""
        loan = self._loan
        if loan is not None:
            loan._finish()
        self._fin()

    @property
    def closed(self) -> bool:
        return self._st.ptr is None

    @property
    def client(self) -> Client:
        return self._client

    @property
    def name(self) -> str:
        return self._info.name

    def __enter__(self) -> "Queue":
        self._ptr()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self):
        i = self._info
        return "<gpuq.Queue %r handler=%s backend=%s slot_bytes=%d%s>" % (
            i.name, i.handler, i.backend, i.slot_bytes,
            " closed" if self.closed else "")

    # -- properties ----------------------------------------------------------
    def info(self) -> QueueInfo:
        """Fixed properties of the queue (gpuq_queue_info_get)."""
        return self._info

    def stats(self) -> Stats:
        """The queue's counters, all clients (gpuq_stats_get)."""
        s = _lib.gpuq_stats()
        with self._lock:
            check(self._lib.gpuq_stats_get(self._ptr(), ctypes.byref(s)))
        return Stats(*(getattr(s, f) for f, _ in _lib.gpuq_stats._fields_))

    @property
    def inflight(self) -> int:
        """Messages enqueued through this handle whose results are unread."""
        with self._lock:
            return self._lib.gpuq_inflight(self._ptr())

    # -- key-value (a queue with handler = kv) -------------------------------
    def kv_mget(self, keys: Sequence[bytes], cap: int = 4096,
                timeout: Optional[float] = None) -> List[Optional[bytes]]:
        """Values of keys from the broker's table (gpuq_kv_mget), None for
        a missing key; at most cap bytes of each.  Raises for the call's
        errors, and KeySizeError for a key the table refuses."""
        items, bufs = self._kv_items(keys, None, cap)
        self._kv_call(self._lib.gpuq_kv_mget, items, timeout)
        out = []
        for it, buf in zip(items, bufs):
            if it.status == ERRORS["GPUQ_ENOKEY"]:
                out.append(None)
                continue
            check(it.status)
            out.append(bytes(buf[:min(it.vlen, cap)]))
        return out

    def kv_mput(self, pairs, timeout: Optional[float] = None) -> None:
        """Insert or overwrite keys (gpuq_kv_mput); pairs: a mapping or
        (key, value) pairs.  Raises for the call's errors, or the first
        key's refusal (KeySizeError, ValueSizeError, TableFull) after every
        other key was written."""
        pairs = list(pairs.items() if hasattr(pairs, "items") else pairs)
        items, _ = self._kv_items([k for k, _ in pairs],
                                  [v for _, v in pairs], 0)
        self._kv_call(self._lib.gpuq_kv_mput, items, timeout)
        for it in items:
            check(it.status)

    def kv_mdelete(self, keys: Sequence[bytes],
                   timeout: Optional[float] = None) -> List[bool]:
        """Delete keys (gpuq_kv_mdelete); True for each that was there."""
        items, _ = self._kv_items(keys, None, 0)
        self._kv_call(self._lib.gpuq_kv_mdelete, items, timeout)
        out = []
        for it in items:
            if it.status != ERRORS["GPUQ_ENOKEY"]:
                check(it.status)
            out.append(it.status == 0)
        return out

    def kv_get(self, key: bytes, cap: int = 4096,
               timeout: Optional[float] = None) -> Optional[bytes]:
        """One key's value, or None."""
        return self.kv_mget([key], cap, timeout)[0]

    def kv_put(self, key: bytes, value: bytes,
               timeout: Optional[float] = None) -> None:
        """Insert or overwrite one key."""
        self.kv_mput([(key, value)], timeout)

    def kv_delete(self, key: bytes, timeout: Optional[float] = None) -> bool:
        """Delete one key; True if it was there."""
        return self.kv_mdelete([key], timeout)[0]

    @staticmethod
    def _kv_items(keys, values, cap):
        n = len(keys)
        items = (_lib.gpuq_kv_item * n)()
        bufs = []
        for i, k in enumerate(keys):
            k = bytes(k)
            kb = ctypes.create_string_buffer(k, len(k) or 1)
            bufs.append(kb)
            items[i].key = ctypes.cast(kb, ctypes.c_void_p)
            items[i].klen = len(k)
            if values is not None:
                v = bytes(values[i])
                vb = ctypes.create_string_buffer(v, len(v) or 1)
                bufs.append(vb)
                items[i].val = ctypes.cast(vb, ctypes.c_void_p)
                items[i].vlen = len(v)
            elif cap:
                vb = ctypes.create_string_buffer(cap)
                bufs.append(vb)
                items[i].val = ctypes.cast(vb, ctypes.c_void_p)
                items[i].vlen = cap
        # keep every buffer alive with the items; return the value buffers
        # of a get in key order
        items._keep = bufs
        return items, bufs[1::2] if values is None and cap else bufs

    def _kv_call(self, fn, items, timeout):
        with self._lock:
            check(fn(self._ptr(), items, len(items), _ms(timeout)))

    # -- enqueue -------------------------------------------------------------
    def enqueue(self, data, key: Optional[int] = None,
                timeout: Optional[float] = None) -> int:
        """Copy one message into the ring and publish it; returns its id.

        data: bytes, bytearray, memoryview, array.array, a numpy array or any
        other buffer-protocol object (its raw bytes, read in place when
        contiguous).  key: ordering key (ordered queues; None = 0).
        Raises Full (no room, timeout 0), Timeout, TooBig, EmptyPayload,
        CompletionsFull, Shutdown, BrokerDead, Busy (a loan is open)."""
        key = 0 if key is None else _u64(key, "key")
        arg, n, rel = _payload(data)
        try:
            lib = self._lib
            idv = self._idv
            rc = _ETIMEDOUT
            for ms in _chunks(timeout):
                with self._lock:
                    rc = lib.gpuq_enqueue_key(self._ptr(), key, arg, n,
                                              ctypes.byref(idv), ms)
                    if rc == 0:
                        return idv.value
                if rc != _ETIMEDOUT:
                    break
            raise error(rc)
        finally:
            if rel is not None:
                rel()

    def enqueue_batch(self, messages: Iterable, keys=None,
                      timeout: Optional[float] = None) -> List[int]:
        """Enqueue several messages (gpuq_enqueue_batch); returns their ids,
        which are consecutive.

        Every message is checked first: one that is empty or too big fails
        the whole call with nothing enqueued.  If the ring stays full for
        `timeout`, the ids of the messages enqueued so far are returned:
        messages[len(ids):] were not enqueued.  Nothing enqueued at all
        raises Full / Timeout / CompletionsFull.  keys: None (all 0), one
        int for every message, or a sequence with one key per message."""
        msgs = list(messages)
        n = len(msgs)
        if n == 0:
            return []
        if keys is None or isinstance(keys, int):
            k = 0 if keys is None else _u64(keys, "key")
            keyl = [k] * n
        else:
            keyl = [_u64(k, "key") for k in keys]
            if len(keyl) != n:
                raise ValueError("keys has %d entries for %d messages"
                                 % (len(keyl), n))
        iov = (_lib.gpuq_iov * n)()
        keep = []
        rels = []
        try:
            for i, d in enumerate(msgs):
                arg, ln, rel = _payload(d)
                keep.append(arg)
                if rel is not None:
                    rels.append(rel)
                iov[i].data = _address(arg)
                iov[i].len = ln
                iov[i].key = keyl[i]
            ids = (ctypes.c_uint64 * n)()
            base_iov = ctypes.addressof(iov)
            base_ids = ctypes.addressof(ids)
            isz = ctypes.sizeof(_lib.gpuq_iov)
            P_iov = ctypes.POINTER(_lib.gpuq_iov)
            P_u64 = ctypes.POINTER(ctypes.c_uint64)
            done = 0
            rc = _ETIMEDOUT
            for ms in _chunks(timeout):
                with self._lock:
                    rc = self._lib.gpuq_enqueue_batch(
                        self._ptr(),
                        ctypes.cast(base_iov + done * isz, P_iov), n - done,
                        ctypes.cast(base_ids + done * 8, P_u64), ms)
                if rc > 0:
                    done += rc
                    if done == n:
                        break
                    continue
                if done > 0 or rc != _ETIMEDOUT:
                    break
            if done == 0:
                raise error(rc)
            return list(ids[:done])
        finally:
            for rel in rels:
                rel()

    def reserve(self, n: int = 1, key: Optional[int] = None,
                timeout: Optional[float] = None) -> "Loan":
        """Loan n consecutive slots to write in place (gpuq_reserve):

            with q.reserve(4) as loan:
                for i, slot in enumerate(loan):     # writable memoryviews
                    loan.lengths[i] = fill(slot)
            # committed here; ids are loan.ids

        See Loan for what happens when the block raises."""
        if self._loan is not None:
            raise error(-_errno.EBUSY)  # what the library would say
        key = None if key is None else _u64(key, "key")
        loan = _lib.gpuq_loan()
        rc = _ETIMEDOUT
        for ms in _chunks(timeout):
            with self._lock:
                p = self._ptr()
                if key is None:
                    rc = self._lib.gpuq_reserve(p, n, ctypes.byref(loan), ms)
                else:
                    rc = self._lib.gpuq_reserve_key(p, key, n,
                                                    ctypes.byref(loan), ms)
                if rc == 0:
                    self._loan = Loan(self, loan)
                    return self._loan
            if rc != _ETIMEDOUT:
                break
        raise error(rc)

    def vram_handle(self) -> bytes:
        """The queue's VRAM ring as a 64-byte cudaIpcMemHandle_t, for a GPU
        producer to open with its CUDA library (gpuq_vram_handle; see
        Loan.vram_offset and Loan.commit_device).  BackendError unless the
        queue is on the CUDA backend."""
        buf = ctypes.create_string_buffer(64)
        with self._lock:
            rc = self._lib.gpuq_vram_handle(self._ptr(), buf, 64)
        check(rc)
        return buf.raw[:rc]

    # -- results -------------------------------------------------------------
    def _grow(self, need):
        self._res = ctypes.create_string_buffer(max(need, 1))

    def result(self, id: int, out=None):
        """The result of message id, if it has completed (gpuq_result).

        Returns bytes, or with out (a writable buffer) the number of bytes
        copied into it.  The result is read once: a second call raises
        NotFound.  Raises NotReady (not complete yet), HandlerFailed
        (dead-lettered), NotFound, BrokerDead."""
        return self._get(id, out, False, 0)

    def wait(self, id: int, timeout: Optional[float] = None, out=None):
        """result(), waiting up to timeout seconds (None: no limit) for the
        message to complete (gpuq_wait): raises Timeout when it runs out."""
        return self._get(id, out, True, timeout)

    def _get(self, id, out, wait, timeout):
        id = _u64(id, "id")
        lib = self._lib
        lenv = self._lenv
        if out is not None:
            arr, cap = _writable(out)
        chunks = _chunks(timeout) if wait else [None]
        rc = _ETIMEDOUT
        for ms in chunks:
            with self._lock:
                p = self._ptr()
                while True:
                    if out is not None:
                        buf = arr
                    else:
                        buf, cap = self._res, len(self._res)
                    if ms is None:
                        rc = lib.gpuq_result(p, id, buf, cap,
                                             ctypes.byref(lenv))
                    else:
                        rc = lib.gpuq_wait(p, id, buf, cap,
                                           ctypes.byref(lenv), ms)
                    if rc == _EMSGSIZE and out is None:
                        self._grow(lenv.value)
                        continue
                    break
                if rc == 0:
                    if out is not None:
                        return lenv.value
                    return ctypes.string_at(self._res, lenv.value)
            if rc != _ETIMEDOUT:
                break
        raise error(rc)

    def poll(self, max: int = 64, timeout: Optional[float] = 0) -> List[Completion]:
        """Completed messages not reported before, up to max, in no
        particular order (gpuq_poll).  Their results are copied out and
        freed: result()/wait() no longer find them.

        timeout 0 (the default) never waits; otherwise wait up to timeout
        seconds (None: no limit) for at least one completion, sleeping with
        backoff.  Returns [] at once when nothing is in flight.  A
        dead-lettered message is reported with status GPUQ_EHANDLER, not
        raised.  Raises BrokerDead when nothing is ready and the broker is
        gone."""
        if max < 1:
            raise ValueError("max must be >= 1")
        if self._comp is None or len(self._comp) < max:
            self._comp = (_lib.gpuq_completion * max)()
        comp = self._comp
        lib = self._lib
        end = None
        delay = 50e-6
        while True:
            with self._lock:
                p = self._ptr()
                rc = lib.gpuq_poll(p, comp, max)
                if rc > 0:
                    out = []
                    for i in range(rc):
                        c = comp[i]
                        out.append(Completion(
                            c.id, c.status,
                            ctypes.string_at(c.result, c.len) if c.len else b"",
                            c.attempts, c.worker, c.seq))
                    return out
                if rc < 0:
                    raise error(rc)
                if timeout == 0 or lib.gpuq_inflight(p) == 0:
                    return []
            now = time.monotonic()
            if end is None:
                end = float("inf") if timeout is None else now + timeout
            if now >= end:
                return []
            time.sleep(min(delay, end - now))
            delay = min(delay * 2, 0.005)


# ---------------------------------------------------------------------------
# Loan
# ---------------------------------------------------------------------------
class Loan:
    """Slots loaned by Queue.reserve(), to be written in place.

    loan[i] (or iterating) gives slot i as a writable memoryview of
    slot_bytes bytes; numpy.frombuffer(loan[i], ...) views it without a
    copy.  Say how many bytes of each slot are the message in
    loan.lengths[i] (or use loan.write(i, data), which copies and sets it),
    then commit: explicitly with commit(), or by leaving the `with` block.

    A loan cannot be taken back: its slots must be published, and the
    queue's consumer waits at them until they are.  So when the `with`
    block raises, or the commit at its end fails (a length of 0 or over
    slot_bytes), the loan is abandoned: nothing is published and the queue
    handle is closed, which is the only way the library releases a loan
    (the broker skips the slots).  Unread results of that handle are lost
    with it, and the Queue is closed: open the queue again.  Keep loans
    short, and validate data before reserving.

    The memoryviews are only valid until the loan is committed or
    abandoned; they are released then (views derived from them, such as
    numpy arrays, must not be used afterwards).
    """

    def __init__(self, queue: Queue, loan):
        self._q = queue
        self._loan = loan
        self._views = {}
        self.count = loan.count
        self.slot_bytes = loan.slot_bytes
        self.first_id = loan.first_id
        self.key = loan.key
        self.lengths = [0] * loan.count
        self.committed = False
        self.open = True

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + self.count)

    def __len__(self):
        return self.count

    def slot(self, i: int) -> memoryview:
        """Slot i as a writable memoryview ('B', slot_bytes long)."""
        if not self.open:
            raise ValueError("loan is no longer open")
        if not 0 <= i < self.count:
            raise IndexError("slot %d of a loan of %d" % (i, self.count))
        v = self._views.get(i)
        if v is None:
            with self._q._lock:
                addr = self._q._lib.gpuq_loan_slot(
                    self._q._ptr(), ctypes.byref(self._loan), i)
            if not addr:
                raise Error(-_errno.EINVAL)
            arr = (ctypes.c_ubyte * self.slot_bytes).from_address(addr)
            v = memoryview(arr).cast("B")
            self._views[i] = v
        return v

    __getitem__ = slot

    def __iter__(self):
        for i in range(self.count):
            yield self.slot(i)

    def write(self, i: int, data, offset: int = 0) -> int:
        """Copy data into slot i at offset and set lengths[i] to the end of
        what was written; returns that length."""
        m = memoryview(data)
        if m.ndim != 1 or m.format != "B":
            try:
                m = m.cast("B")
            except (TypeError, ValueError):  # not C-contiguous, odd format
                m = memoryview(m.tobytes())
        end = offset + m.nbytes
        if offset < 0 or end > self.slot_bytes:
            raise error(ERRORS["GPUQ_ETOOBIG"])
        self.slot(i)[offset:end] = m
        self.lengths[i] = end
        return end

    def commit(self, lengths: Optional[Sequence[int]] = None) -> range:
        """Publish every slot (gpuq_commit); returns the ids.  A length
        outside 1..slot_bytes raises EmptyPayload / TooBig and leaves the
        loan open, to be committed again (or abandoned)."""
        if not self.open:
            raise ValueError("loan is no longer open")
        lens = list(self.lengths if lengths is None else lengths)
        if len(lens) != self.count:
            raise ValueError("%d lengths for a loan of %d slots"
                             % (len(lens), self.count))
        if lengths is not None:
            self.lengths = lens
        if any(not 0 <= x <= 0xffffffff for x in lens):
            raise ValueError("lengths must be in 0 .. 2**32-1")
        arr = (ctypes.c_uint32 * self.count)(*lens)
        with self._q._lock:
            check(self._q._lib.gpuq_commit(self._q._ptr(),
                                           ctypes.byref(self._loan), arr))
        self.committed = True
        self._finish()
        return self.ids

    def vram_offset(self, i: int) -> int:
        """Byte offset in the VRAM ring where a GPU producer writes message
        i's payload (gpuq_vram_offset)."""
        if not self.open:
            raise ValueError("loan is no longer open")
        with self._q._lock:
            off = self._q._lib.gpuq_vram_offset(self._q._ptr(),
                                                ctypes.byref(self._loan), i)
        check(int(off) if off < 0 else 0)
        return int(off)

    def commit_device(self, lengths: Sequence[int]) -> range:
        """Publish a loan whose payloads the caller wrote into the VRAM ring
        (gpuq_commit_device), once those device writes have completed.
        BackendError, with nothing published, unless the queue is on the
        CUDA backend."""
        if not self.open:
            raise ValueError("loan is no longer open")
        lens = list(lengths)
        if len(lens) != self.count:
            raise ValueError("%d lengths for a loan of %d slots"
                             % (len(lens), self.count))
        arr = (ctypes.c_uint32 * self.count)(*lens)
        with self._q._lock:
            check(self._q._lib.gpuq_commit_device(
                self._q._ptr(), ctypes.byref(self._loan), arr))
        self.lengths = lens
        self.committed = True
        self._finish()
        return self.ids

    def abandon(self) -> None:
        """Publish nothing: close the queue handle so that the broker
        reclaims the slots (see the class documentation)."""
        if not self.open:
            return
        q = self._q
        self._finish()
        q._st.why = " (closed to abandon a loan)"
        q.close()

    def _finish(self):
        self.open = False
        if self._q._loan is self:
            self._q._loan = None
        for v in self._views.values():
            try:
                v.release()
            except BufferError:
                pass  # something still holds a view of it
        self._views.clear()

    def __enter__(self) -> "Loan":
        return self

    def __exit__(self, et, ev, tb) -> None:
        if not self.open:
            return
        if et is not None:
            self.abandon()
            return
        try:
            self.commit()
        except BaseException:
            self.abandon()
            raise

    def __repr__(self):
        return "<gpuq.Loan ids %d..%d slot_bytes=%d %s>" % (
            self.first_id, self.first_id + self.count - 1, self.slot_bytes,
            "open" if self.open else
            ("committed" if self.committed else "abandoned"))
