"""Tests of the gpuq Python binding against a real gpuqd.

Run:  GPUQD=.../broker/gpuqd GPUQ_LIBRARY=.../libgpuqclient.so \
      python3 -m unittest discover -s python/tests -v
(tests/check_python.sh does this in `make check`).  Each test class starts
its own broker on a private socket, as tests/harness.c does; numpy is used
where it is installed and not needed otherwise.
"""

import array
import ctypes
import errno
import math
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
TOP = os.path.dirname(PYDIR)
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)

import gpuq  # noqa: E402
from gpuq import _lib  # noqa: E402

try:
    import numpy
except ImportError:
    numpy = None


def _gpuqd():
    p = os.environ.get("GPUQD")
    if p:
        return p
    builddir = os.environ.get("abs_top_builddir") or TOP
    return os.path.join(builddir, "broker", "gpuqd")


GPUQD = _gpuqd()


def setUpModule():
    try:
        _lib.load()
    except gpuq.LibraryNotFound:
        if os.environ.get("GPUQ_LIBRARY"):
            raise  # an explicit library that does not load is a failure
        raise unittest.SkipTest("libgpuqclient not found")
    if not os.access(GPUQD, os.X_OK):
        raise unittest.SkipTest("no gpuqd at %s (set GPUQD)" % GPUQD)


# ---------------------------------------------------------------------------
# Independent references (not the handlers' code, not gpuq.schema's)
# ---------------------------------------------------------------------------
def ref_crc32c(data):
    """Bitwise CRC32C, as bench/reference.h computes it."""
    c = 0xFFFFFFFF
    for b in bytes(data):
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF


def ref_vector_ok(xs, got):
    """bench/reference.h's ref_vector_ok: float32 results within tolerance
    of a double-precision summary."""
    s = sum(xs)
    sq = sum(x * x for x in xs)
    mag = sum(abs(x) for x in xs)
    tol = 1e-5 * len(xs)
    f32 = lambda v: struct.unpack("f", struct.pack("f", v))[0]  # noqa: E731
    return (abs(got[0] - s) <= tol * (mag + 1)
            and abs(got[1] - math.sqrt(sq)) <= tol * (math.sqrt(sq) + 1)
            and got[2] == f32(min(xs)) and got[3] == f32(max(xs)))


# ---------------------------------------------------------------------------
# A private broker
# ---------------------------------------------------------------------------
class Broker:
    def __init__(self, queues):
        self.dir = tempfile.mkdtemp(prefix="gpuq-py-")
        self.socket = os.path.join(self.dir, "gpuqd.sock")
        self.log = os.path.join(self.dir, "gpuqd.log")
        args = [GPUQD, "-s", self.socket]
        backend = os.environ.get("GPUQ_TEST_BACKEND")
        if backend:
            args += ["-b", backend]
        for q in queues:
            args += ["-q", q]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL)
        for _ in range(3000):  # CUDA start-up can take seconds
            try:
                gpuq.connect(self.socket).close()
                return
            except (gpuq.NoBroker, gpuq.BrokerDead):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        self.cleanup()
        raise RuntimeError("gpuqd did not start:\n" + self.log_text())

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.kill(signal.SIGTERM)
        if not os.environ.get("GPUQ_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)


QUEUES = [
    "echo,handler=echo,slot_bytes=256,capacity=64",
    "crc,handler=checksum,slot_bytes=1024,capacity=256",
    "vec,handler=vector,slot_bytes=4096,capacity=64",
    "small,handler=echo,slot_bytes=64,capacity=8",
    "fail,handler=echo,slot_bytes=64,capacity=16,fail_ppm=1000000,"
    "max_attempts=2",
    "cq,handler=echo,slot_bytes=64,capacity=16,cq_capacity=4",
    "kv,handler=kv,table_slots=1024,table_value_bytes=64",
]


class BrokerTest(unittest.TestCase):
    broker = None

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(QUEUES)

    @classmethod
    def tearDownClass(cls):
        if cls.broker:
            cls.broker.cleanup()

    def setUp(self):
        self.client = gpuq.connect(self.broker.socket)
        self.addCleanup(self.client.close)

    def open(self, name):
        return self.client.open(name)


# ---------------------------------------------------------------------------
class TestLibrary(unittest.TestCase):
    def test_error_table_agrees_with_library(self):
        lib = _lib.load()
        for name, code in gpuq.ERRORS.items():
            self.assertEqual(lib.gpuq_err_name(code).decode(), name)
            self.assertEqual(lib.gpuq_strerror(code).decode(),
                             gpuq.MESSAGES[code])
            self.assertEqual(gpuq.err_name(code), name)
        # ... and the library knows no code the table lacks.
        for code in range(gpuq.ERR_BASE - 200, gpuq.ERR_BASE + 1):
            n = lib.gpuq_err_name(code).decode()
            if n != "UNKNOWN":
                self.assertIn(n, gpuq.ERRORS, "code %d" % code)
        self.assertEqual(gpuq.err_name(0), "OK")
        self.assertEqual(gpuq.err_name(-errno.EINVAL), "EINVAL")
        self.assertEqual(gpuq.err_name(-errno.EBUSY), "EBUSY")

    def test_exception_classes(self):
        for code, cls in gpuq.EXCEPTIONS.items():
            e = gpuq.errors.error(code)
            self.assertIs(type(e), cls)
            self.assertIsInstance(e, gpuq.Error)
            self.assertEqual(e.code, code)
            self.assertEqual(e.name, gpuq.err_name(code))
            self.assertEqual(e.message, gpuq.strerror(code))
            self.assertEqual(str(e), "%s: %s" % (e.name, e.message))
            e2 = pickle.loads(pickle.dumps(e))
            self.assertIs(type(e2), cls)
            self.assertEqual((e2.code, e2.name, e2.message),
                             (e.code, e.name, e.message))
        every = {n for n in gpuq.ERRORS}
        have = {gpuq.err_name(c) for c in gpuq.EXCEPTIONS}
        self.assertLessEqual(every, have, "a gpuq code without a class")
        self.assertIsInstance(gpuq.Timeout(gpuq.ERRORS["GPUQ_ETIMEDOUT"]),
                              TimeoutError)
        self.assertIsInstance(gpuq.NoBroker(gpuq.ERRORS["GPUQ_ENOBROKER"]),
                              ConnectionError)
        self.assertIsInstance(gpuq.InvalidArgument(-errno.EINVAL), ValueError)
        e = gpuq.errors.error(-errno.ENOMEM)  # no class of its own
        self.assertIs(type(e), gpuq.Error)
        self.assertEqual(e.name, "ENOMEM")

    def test_version_and_socket(self):
        self.assertRegex(gpuq.version(), r"^\d+\.\d+")
        self.assertTrue(os.path.exists(gpuq.library_path())
                        or "/" not in gpuq.library_path())
        old = os.environ.get("GPUQ_SOCKET")
        os.environ["GPUQ_SOCKET"] = "/x/y.sock"
        try:
            self.assertEqual(gpuq.default_socket(), "/x/y.sock")
        finally:
            if old is None:
                del os.environ["GPUQ_SOCKET"]
            else:
                os.environ["GPUQ_SOCKET"] = old

    def test_schema_crc(self):
        self.assertEqual(ref_crc32c(b"123456789"), 0xE3069283)
        self.assertEqual(gpuq.schema.crc32c(b"123456789"), 0xE3069283)
        rnd = random.Random(1)
        for n in (1, 7, 64, 333):
            d = bytes(rnd.getrandbits(8) for _ in range(n))
            self.assertEqual(gpuq.schema.crc32c(d), ref_crc32c(d))

    def test_payloads_are_not_copied(self):
        """Contiguous buffers reach the library at their own address."""
        from gpuq.client import _address, _payload

        def addr_of(data):
            arg, n, rel = _payload(data)
            try:
                return _address(arg), n
            finally:
                if rel:
                    rel()

        b = b"immutable bytes"
        self.assertEqual(addr_of(b),
                         (ctypes.cast(ctypes.c_char_p(b),
                                      ctypes.c_void_p).value, len(b)))
        ro = memoryview(b)[3:]
        self.assertEqual(addr_of(ro)[0], addr_of(b)[0] + 3)
        ba = bytearray(b"writable")
        cb = (ctypes.c_char * len(ba)).from_buffer(ba)
        self.assertEqual(addr_of(ba), (ctypes.addressof(cb), len(ba)))
        del cb
        arr = array.array("d", [1.0, 2.0, 3.0])
        self.assertEqual(addr_of(arr), (arr.buffer_info()[0], 24))
        if numpy is not None:
            for a in (numpy.arange(6, dtype=numpy.float32).reshape(2, 3),
                      numpy.frombuffer(b"12345678", dtype=numpy.uint16),
                      numpy.array([1, 2], dtype="datetime64[s]")):
                self.assertEqual(addr_of(a), (a.__array_interface__["data"][0],
                                              a.nbytes))

    def test_build_backend(self):
        """The in-tree PEP 517 backend makes a valid wheel (what
        `pip install ./python` installs) from pyproject.toml's metadata."""
        import base64
        import hashlib
        import importlib.util
        import zipfile
        spec = importlib.util.spec_from_file_location(
            "gpuq_build", os.path.join(PYDIR, "_build", "gpuq_build.py"))
        b = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(b)
        self.assertEqual(b._project()["version"], gpuq.__version__)
        self.assertEqual(b.get_requires_for_build_wheel(), [])
        d = tempfile.mkdtemp(prefix="gpuq-py-whl-")
        try:
            whl = b.build_wheel(d)
            self.assertEqual(whl, "gpuq-%s-py3-none-any.whl"
                             % gpuq.__version__)
            with zipfile.ZipFile(os.path.join(d, whl)) as z:
                names = set(z.namelist())
                for f in ("__init__.py", "client.py", "errors.py", "_lib.py",
                          "schema.py", "py.typed"):
                    self.assertIn("gpuq/" + f, names)
                self.assertFalse(any("__pycache__" in n for n in names))
                di = "gpuq-%s.dist-info/" % gpuq.__version__
                meta = z.read(di + "METADATA").decode()
                self.assertIn("Name: gpuq\n", meta)
                self.assertIn("Version: %s\n" % gpuq.__version__, meta)
                for line in z.read(di + "RECORD").decode().split():
                    name, digest, size = line.split(",")
                    if not digest:
                        continue
                    data = z.read(name)
                    self.assertEqual(int(size), len(data))
                    want = base64.urlsafe_b64encode(
                        hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual(digest, "sha256=" + want)
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_abi_layout(self):
        """Every ctypes struct matches gpuq.h (sizes and offsets), checked
        by a C compiler when one is installed."""
        header = os.path.join(TOP, "libclient", "gpuq.h")
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if not cc or not os.path.exists(header):
            self.skipTest("no C compiler or no gpuq.h")
        lines = ['#include <stdio.h>', '#include <stddef.h>',
                 '#include "gpuq.h"', 'int main(void) {']
        want = []
        for name, st in _lib.STRUCTS.items():
            lines.append('printf("%%zu\\n", sizeof(%s));' % name)
            want.append(ctypes.sizeof(st))
            for f, _ in st._fields_:
                lines.append('printf("%%zu\\n", offsetof(%s, %s));'
                             % (name, f))
                want.append(getattr(st, f).offset)
        lines.append("return 0; }")
        d = tempfile.mkdtemp(prefix="gpuq-py-abi-")
        try:
            src = os.path.join(d, "abi.c")
            exe = os.path.join(d, "abi")
            with open(src, "w") as f:
                f.write("\n".join(lines))
            subprocess.run([cc, "-I", os.path.dirname(header), "-o", exe, src],
                           check=True)
            out = subprocess.run([exe], check=True, stdout=subprocess.PIPE)
            got = [int(x) for x in out.stdout.split()]
        finally:
            shutil.rmtree(d, ignore_errors=True)
        self.assertEqual(got, want)


# ---------------------------------------------------------------------------
class TestConnect(unittest.TestCase):
    def test_no_broker(self):
        d = tempfile.mkdtemp(prefix="gpuq-py-")
        try:
            with self.assertRaises(gpuq.NoBroker) as cm:
                gpuq.connect(os.path.join(d, "nothing.sock"))
            self.assertEqual(cm.exception.name, "GPUQ_ENOBROKER")
            self.assertIsInstance(cm.exception, ConnectionError)
        finally:
            shutil.rmtree(d)

    def test_path_too_long(self):
        with self.assertRaises(gpuq.InvalidArgument):
            gpuq.connect("/tmp/" + "x" * 200)


class TestBasics(BrokerTest):
    def test_info_and_repr(self):
        with self.open("crc") as q:
            i = q.info()
            self.assertEqual(i.name, "crc")
            self.assertEqual(i.handler, "checksum")
            self.assertIn(i.backend, ("cpu", "cuda"))
            self.assertEqual(i.slot_bytes, 1024)
            self.assertEqual(i.capacity, 256)
            self.assertEqual(i.result_bytes, 4)
            self.assertFalse(i.ordered)
            self.assertEqual(q.name, "crc")
            self.assertIn("crc", repr(q))

    def test_no_queue(self):
        with self.assertRaises(gpuq.NoQueue):
            self.client.open("no-such-queue")
        with self.assertRaises(gpuq.InvalidArgument):
            self.client.open("")

    def test_connect_default_socket_from_env(self):
        old = os.environ.get("GPUQ_SOCKET")
        os.environ["GPUQ_SOCKET"] = self.broker.socket
        try:
            with gpuq.connect() as c, c.open("echo") as q:
                self.assertEqual(q.wait(q.enqueue(b"env"), 5), b"env")
        finally:
            if old is None:
                del os.environ["GPUQ_SOCKET"]
            else:
                os.environ["GPUQ_SOCKET"] = old

    def test_echo_payload_types(self):
        with self.open("echo") as q:
            ba = bytearray(b"bytearray!")
            arr = array.array("i", [1, -2, 3])
            ro = memoryview(b"read-only view")[5:]
            c = (ctypes.c_char * 5).from_buffer_copy(b"ctyp!")
            two_d = memoryview(bytearray(b"abcdefgh")).cast("B", (2, 4))
            cases = [
                (b"bytes", b"bytes"),
                (ba, bytes(ba)),
                (memoryview(ba)[2:7], b"tearr"),
                (ro, b"only view"),
                (arr, arr.tobytes()),
                (c, b"ctyp!"),
                (two_d, b"abcdefgh"),
                (memoryview(b"0123456789")[::2], b"02468"),  # strided: copied
            ]
            if numpy is not None:
                a = numpy.arange(10, dtype=numpy.int32)
                a_ro = numpy.frombuffer(b"numpy-ro", dtype=numpy.uint8)
                m = numpy.arange(12, dtype=numpy.uint16).reshape(3, 4)
                cases += [(a, a.tobytes()), (a_ro, b"numpy-ro"),
                          (m[:, 1], m[:, 1].tobytes()),   # non-contiguous
                          (m.T, m.T.tobytes()),           # F order
                          (numpy.array([1, 2], dtype="datetime64[s]"),
                           numpy.array([1, 2], dtype="datetime64[s]")
                           .tobytes())]
            for data, want in cases:
                mid = q.enqueue(data, timeout=1)
                self.assertEqual(q.wait(mid, 5), want, repr(data))
            del cases, data
            fresh = bytearray(b"resizable")
            q.wait(q.enqueue(fresh), 5)
            fresh.extend(b"...")  # no buffer export left behind
            q.wait(q.enqueue_batch([fresh])[0], 5)
            fresh.extend(b"...")
            with self.assertRaises(TypeError):
                q.enqueue("a str is not bytes")
            with self.assertRaises(TypeError):
                q.enqueue(12345)

    def test_checksum(self):
        rnd = random.Random(7)
        with self.open("crc") as q:
            mid = q.enqueue(b"123456789")
            res = q.wait(mid, 5)
            self.assertEqual(len(res), 4)
            self.assertEqual(struct.unpack("<I", res)[0], 0xE3069283)
            self.assertEqual(gpuq.schema.checksum_result(res), 0xE3069283)
            sent = {}
            for n in (1, 2, 3, 100, 255, 1023, 1024):
                d = bytes(rnd.getrandbits(8) for _ in range(n))
                sent[q.enqueue(d)] = d
            for mid, d in sent.items():
                got = struct.unpack("<I", q.wait(mid, 5))[0]
                self.assertEqual(got, ref_crc32c(d), "len %d" % len(d))

    def test_vector(self):
        rnd = random.Random(3)
        with self.open("vec") as q:
            self.assertEqual(q.info().result_bytes, 16)
            for n in (1, 4, 100, 1024):
                xs = [rnd.uniform(-100, 100) for _ in range(n)]
                if numpy is not None:
                    payload = numpy.array(xs, dtype=numpy.float32)
                    xs = [float(v) for v in payload]
                else:
                    payload = array.array("f", xs)
                    xs = list(payload)
                res = q.wait(q.enqueue(payload), 5)
                got = struct.unpack("<4f", res)
                self.assertTrue(ref_vector_ok(xs, got), (n, got))
                self.assertEqual(tuple(gpuq.schema.vector_result(res)), got)
            # a length that is not a multiple of 4 fails in the handler
            mid = q.enqueue(b"abc")
            with self.assertRaises(gpuq.HandlerFailed):
                q.wait(mid, 5)

    def test_batch(self):
        rnd = random.Random(5)
        with self.open("crc") as q:
            self.assertEqual(q.enqueue_batch([]), [])
            msgs = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 300)))
                    for _ in range(100)]
            msgs[3] = bytearray(msgs[3])
            msgs[4] = memoryview(msgs[4])
            ids = q.enqueue_batch(msgs, timeout=5)
            self.assertEqual(len(ids), 100)
            self.assertEqual(ids, list(range(ids[0], ids[0] + 100)))
            for mid, d in zip(ids, msgs):
                self.assertEqual(struct.unpack("<I", q.wait(mid, 5))[0],
                                 ref_crc32c(d))
            # keys: one per message, or one for all
            ids = q.enqueue_batch([b"k1", b"k2"], keys=[1, 2**64 - 1])
            ids += q.enqueue_batch([b"k3", b"k4"], keys=9)
            self.assertEqual(len(ids), 4)
            for mid in ids:
                q.wait(mid, 5)
            with self.assertRaises(ValueError):
                q.enqueue_batch([b"a", b"b"], keys=[1])
            # one bad message: nothing enqueued
            before = q.inflight
            with self.assertRaises(gpuq.EmptyPayload):
                q.enqueue_batch([b"ok", b"", b"ok"])
            with self.assertRaises(gpuq.TooBig):
                q.enqueue_batch([b"ok", b"x" * 1025])
            self.assertEqual(q.inflight, before)
            nxt = q.enqueue(b"next")
            self.assertEqual(nxt, ids[-1] + 1)
            q.wait(nxt, 5)

    def test_poll(self):
        with self.open("echo") as q:
            self.assertEqual(q.poll(), [])
            self.assertEqual(q.poll(timeout=None), [])  # nothing in flight
            sent = {q.enqueue(b"poll %d" % i): b"poll %d" % i
                    for i in range(40)}
            got = {}
            deadline = time.monotonic() + 10
            while len(got) < len(sent) and time.monotonic() < deadline:
                for c in q.poll(max=16, timeout=1):
                    self.assertIsInstance(c, gpuq.Completion)
                    self.assertNotIn(c.id, got)
                    self.assertTrue(c.ok)
                    self.assertEqual(c.status, 0)
                    self.assertEqual(c.attempts, 1)
                    self.assertGreaterEqual(c.worker, 0)
                    got[c.id] = c.data
            self.assertEqual(got, sent)
            self.assertEqual(q.poll(), [])
            with self.assertRaises(gpuq.NotFound):  # poll consumed them
                q.result(next(iter(sent)))
            with self.assertRaises(ValueError):
                q.poll(max=0)

    def test_result_and_wait(self):
        with self.open("echo") as q:
            mid = q.enqueue(b"once")
            self.assertEqual(q.wait(mid), b"once")
            with self.assertRaises(gpuq.NotFound):
                q.result(mid)
            with self.assertRaises(gpuq.NotFound):
                q.wait(12345, 0)
            # result() polls without waiting
            mid = q.enqueue(b"later")
            deadline = time.monotonic() + 5
            while True:
                try:
                    self.assertEqual(q.result(mid), b"later")
                    break
                except gpuq.NotReady:
                    self.assertLess(time.monotonic(), deadline)
                    time.sleep(0.001)
            # out=: into a caller's buffer
            mid = q.enqueue(b"into a buffer")
            buf = bytearray(64)
            n = q.wait(mid, 5, out=buf)
            self.assertEqual(bytes(buf[:n]), b"into a buffer")
            mid = q.enqueue(b"too long for out")
            small = bytearray(4)
            with self.assertRaises(gpuq.Error) as cm:
                q.wait(mid, 5, out=small)
            self.assertEqual(cm.exception.name, "EMSGSIZE")
            self.assertEqual(q.wait(mid, 5), b"too long for out")  # still there

    def test_errors_too_big_and_empty(self):
        with self.open("echo") as q:
            with self.assertRaises(gpuq.TooBig) as cm:
                q.enqueue(b"x" * 257)
            self.assertEqual(cm.exception.code, gpuq.ERRORS["GPUQ_ETOOBIG"])
            self.assertEqual(cm.exception.name, "GPUQ_ETOOBIG")
            with self.assertRaises(gpuq.EmptyPayload):
                q.enqueue(b"")
            with self.assertRaises(gpuq.EmptyPayload):
                q.enqueue(bytearray())
            self.assertEqual(q.inflight, 0)
            self.assertEqual(q.wait(q.enqueue(b"x" * 256), 5), b"x" * 256)

    def test_bad_arguments(self):
        with self.open("echo") as q:
            with self.assertRaises(ValueError):
                q.enqueue(b"x", timeout=-1)
            with self.assertRaises(ValueError):
                q.enqueue(b"x", key=-1)
            with self.assertRaises(ValueError):
                q.enqueue(b"x", key=2**64)
            with self.assertRaises(gpuq.InvalidArgument):
                q.reserve(0)
            with self.assertRaises(gpuq.InvalidArgument):
                q.reserve(65)  # > capacity
            self.assertEqual(q.inflight, 0)

    def test_handler_failed(self):
        with self.open("fail") as q:
            self.assertEqual(q.info().max_attempts, 2)
            before = q.stats()
            mid = q.enqueue(b"doomed")
            with self.assertRaises(gpuq.HandlerFailed) as cm:
                q.wait(mid, 5)
            self.assertEqual(cm.exception.name, "GPUQ_EHANDLER")
            q.enqueue(b"doomed too")
            cs = q.poll(timeout=5)
            self.assertEqual(len(cs), 1)
            self.assertFalse(cs[0].ok)
            self.assertEqual(cs[0].status, gpuq.ERRORS["GPUQ_EHANDLER"])
            self.assertEqual(cs[0].attempts, 2)
            self.assertEqual(cs[0].data, b"")
            with self.assertRaises(gpuq.HandlerFailed):
                cs[0].raise_for_status()
            after = q.stats()
            self.assertEqual(after.dead_lettered - before.dead_lettered, 2)
            self.assertEqual(after.retried - before.retried, 2)
            self.assertGreaterEqual(after.dlq_pending, 2)

    def test_completions_full(self):
        with self.open("cq") as q:
            self.assertEqual(q.info().cq_capacity, 4)
            ids = [q.enqueue(b"%d" % i) for i in range(4)]
            with self.assertRaises(gpuq.CompletionsFull):
                q.enqueue(b"one too many", timeout=1)
            self.assertEqual(q.inflight, 4)
            for mid in ids:
                q.wait(mid, 5)
            self.assertEqual(q.wait(q.enqueue(b"room"), 5), b"room")

    def test_full_timeout_notready_busy_with_held_loan(self):
        """A loan holds the consumer at its slots: messages behind it wait,
        and the 8-slot ring fills."""
        a = self.open("small")
        b = self.open("small")
        loan = a.reserve(4, timeout=1)
        try:
            self.assertEqual(len(loan), 4)
            # the loan's own handle cannot enqueue or reserve meanwhile
            with self.assertRaises(gpuq.Busy) as cm:
                a.enqueue(b"x", timeout=0)
            self.assertEqual(cm.exception.name, "EBUSY")
            with self.assertRaises(gpuq.Busy):
                a.reserve(1)
            # The CPU backend's worker waits at the loan's first slot; the
            # CUDA kernel goes on with the rest of its window (docs/api.md).
            cpu = b.info().backend == "cpu"
            behind = b.enqueue(b"behind the loan", timeout=0)
            if cpu:
                time.sleep(0.05)
                with self.assertRaises(gpuq.NotReady):
                    b.result(behind)
                with self.assertRaises(gpuq.Timeout):
                    b.wait(behind, 0.05)
            self.assertEqual(len(b.enqueue_batch([b"f"] * 3, timeout=0)), 3)
            full_before = b.stats().full_events
            with self.assertRaises(gpuq.Full) as cm:
                b.enqueue(b"no room", timeout=0)
            self.assertEqual(cm.exception.code, gpuq.ERRORS["GPUQ_EFULL"])
            t0 = time.monotonic()
            with self.assertRaises(gpuq.Timeout) as cm:
                b.enqueue(b"no room", timeout=0.05)
            self.assertIsInstance(cm.exception, TimeoutError)
            self.assertGreaterEqual(time.monotonic() - t0, 0.04)
            with self.assertRaises(gpuq.Timeout):  # several 100 ms steps
                b.enqueue(b"no room", timeout=0.25)
            with self.assertRaises(gpuq.Full):
                b.enqueue_batch([b"no room"] * 2, timeout=0)
            self.assertGreater(b.stats().full_events, full_before)
            if cpu:
                self.assertEqual(b.stats().depth, 8)
            for i in range(4):
                loan.write(i, b"loan %d" % i)
        finally:
            loan.commit()
        self.assertEqual(list(loan.ids), list(range(loan.first_id,
                                                    loan.first_id + 4)))
        for i, mid in enumerate(loan.ids):
            self.assertEqual(a.wait(mid, 5), b"loan %d" % i)
        self.assertEqual(b.wait(behind, 5), b"behind the loan")
        rest = []
        deadline = time.monotonic() + 10
        while len(rest) < 3 and time.monotonic() < deadline:
            rest += b.poll(max=8, timeout=1)
        self.assertEqual([c.data for c in rest], [b"f"] * 3)
        self.assertEqual(b.poll(), [])
        self.assertEqual(b.inflight, 0)

    def test_gpu_producer_calls_on_a_cpu_queue(self):
        # The GPU-producer calls refuse a queue not on the CUDA backend and
        # publish nothing: the loan can still be committed normally.
        with self.open("echo") as q:
            if q.info().backend != "cpu":
                self.skipTest("queue is not on the CPU backend")
            with self.assertRaises(gpuq.BackendError):
                q.vram_handle()
            with q.reserve(1, timeout=1) as loan:
                with self.assertRaises(gpuq.BackendError):
                    loan.vram_offset(0)
                with self.assertRaises(gpuq.BackendError):
                    loan.commit_device([3])
                self.assertTrue(loan.open)
                loan.write(0, b"abc")
            self.assertEqual(q.wait(loan.first_id, timeout=5), b"abc")

    def test_loan_zero_copy(self):
        with self.open("echo") as q:
            with q.reserve(3, timeout=1) as loan:
                self.assertEqual(loan.slot_bytes, 256)
                self.assertTrue(all(isinstance(s, memoryview) and
                                    len(s) == 256 and not s.readonly
                                    for s in loan))
                loan[0][:5] = b"hello"
                loan.lengths[0] = 5
                loan.write(1, b"world")
                if numpy is not None:
                    v = numpy.frombuffer(loan[2], dtype=numpy.float32,
                                         count=4)
                    v[:] = [1.5, 2.5, 3.5, 4.5]
                    del v
                    want2 = numpy.array([1.5, 2.5, 3.5, 4.5],
                                        dtype=numpy.float32).tobytes()
                else:
                    loan[2][:16] = array.array("f", [1.5, 2.5, 3.5, 4.5])\
                        .tobytes()
                    want2 = array.array("f", [1.5, 2.5, 3.5, 4.5]).tobytes()
                loan.lengths[2] = 16
                view = loan[0]
            self.assertTrue(loan.committed)
            self.assertFalse(loan.open)
            with self.assertRaises(ValueError):  # released at commit
                view[0]
            want = [b"hello", b"world", want2]
            self.assertEqual([q.wait(i, 5) for i in loan.ids], want)
            # keyed loan, explicit commit with lengths
            loan = q.reserve(2, key=42)
            self.assertEqual(loan.key, 42)
            loan[0][:2] = b"k0"
            loan[1][:2] = b"k1"
            ids = loan.commit([2, 2])
            self.assertEqual([q.wait(i, 5) for i in ids], [b"k0", b"k1"])
            with self.assertRaises(ValueError):
                loan.commit()

    def test_loan_bad_length_can_be_fixed_then_abandoned_on_exit(self):
        q = self.open("echo")
        loan = q.reserve(2)
        loan.write(0, b"ok")
        with self.assertRaises(gpuq.EmptyPayload):
            loan.commit()           # lengths[1] == 0: nothing published
        self.assertTrue(loan.open)  # ... and the loan stays open
        loan.write(1, b"fixed")
        self.assertEqual([q.wait(i, 5) for i in loan.commit()],
                         [b"ok", b"fixed"])
        # leaving the block with an invalid length abandons the loan
        with self.assertRaises(gpuq.TooBig):
            with q.reserve(1) as loan:
                loan.lengths[0] = 257
        self.assertTrue(q.closed)
        self.assert_ring_moves("echo")

    def test_loan_exception_abandons(self):
        q = self.open("echo")
        with self.assertRaises(KeyError):
            with q.reserve(4) as loan:
                loan.write(0, b"half")
                raise KeyError("producer failed mid-loan")
        self.assertFalse(loan.open)
        self.assertFalse(loan.committed)
        self.assertTrue(q.closed)
        with self.assertRaisesRegex(ValueError, "abandon"):
            q.enqueue(b"x")
        self.assert_ring_moves("echo")
        # explicit abandon, and close() with a loan open
        q = self.open("echo")
        q.reserve(2).abandon()
        self.assertTrue(q.closed)
        q = self.open("echo")
        loan = q.reserve(2)
        q.close()
        self.assertFalse(loan.open)
        self.assert_ring_moves("echo")

    def assert_ring_moves(self, name):
        """The broker skipped abandoned slots: a new message completes."""
        with self.client.open(name) as q2:
            self.assertEqual(q2.wait(q2.enqueue(b"after", timeout=5), 10),
                             b"after")

    def test_context_managers_close(self):
        with gpuq.connect(self.broker.socket) as c:
            with c.open("echo") as q:
                self.assertFalse(q.closed)
                q.wait(q.enqueue(b"x"), 5)
            self.assertTrue(q.closed)
            with self.assertRaises(ValueError):
                q.enqueue(b"x")
            with self.assertRaises(ValueError):
                q.stats()
            q.close()  # idempotent
            q2 = c.open("echo")  # not in a with: the client closes it
            loan = c.open("small").reserve(1)
            self.assertFalse(c.closed)
        self.assertTrue(c.closed)
        self.assertTrue(q2.closed)
        self.assertFalse(loan.open)
        with self.assertRaises(ValueError):
            c.open("echo")
        with self.assertRaises(ValueError):
            q2.inflight
        c.close()
        self.assert_ring_moves("small")

    def test_stats_and_clients(self):
        with self.open("crc") as q:
            s0 = q.stats()
            self.assertIsInstance(s0, gpuq.Stats)
            self.assertEqual(s0.capacity, 256)
            self.assertGreaterEqual(s0.clients, 1)
            self.assertLess(s0.heartbeat_age_ns, 5 * 10**9)
            ids = q.enqueue_batch([b"s"] * 50)
            for mid in ids:
                q.wait(mid, 5)
            s1 = q.stats()
            self.assertEqual(s1.enqueued - s0.enqueued, 50)
            self.assertEqual(s1.completed - s0.completed, 50)
            self.assertEqual(s1.depth, 0)

            def settle(n):  # closes reach the broker asynchronously
                deadline = time.monotonic() + 5
                while q.stats().clients != n:
                    self.assertLess(time.monotonic(), deadline,
                                    "clients %d, want %d"
                                    % (q.stats().clients, n))
                    time.sleep(0.01)

            settle(1)  # this handle alone (earlier tests closed theirs)
            with self.client.open("crc") as q2:
                settle(2)
                self.assertEqual(q2.stats().clients, 2)
            settle(1)

    def test_inflight(self):
        with self.open("echo") as q:
            ids = [q.enqueue(b"i") for _ in range(5)]
            self.assertEqual(q.inflight, 5)
            for mid in ids:
                q.wait(mid, 5)
            self.assertEqual(q.inflight, 0)

    def test_threads_share_a_client(self):
        q = self.open("crc")
        errors = []

        def work(t):
            try:
                for i in range(50):
                    d = b"thread %d msg %d" % (t, i)
                    mid = q.enqueue(d, timeout=5)
                    got = struct.unpack("<I", q.wait(mid, 5))[0]
                    if got != ref_crc32c(d):
                        errors.append((t, i))
            except Exception as e:  # pragma: no cover
                errors.append(e)

        ts = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(q.inflight, 0)

    def test_fork_child_cannot_use_parent_client(self):
        q = self.open("echo")
        pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                try:
                    q.enqueue(b"from the child")
                except RuntimeError:
                    with gpuq.connect(self.broker.socket) as c, \
                            c.open("echo") as q2:
                        if q2.wait(q2.enqueue(b"child"), 5) == b"child":
                            code = 0
            finally:
                os._exit(code)
        _, st = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(st)
                         if hasattr(os, "waitstatus_to_exitcode") else st, 0)
        self.assertEqual(q.wait(q.enqueue(b"parent"), 5), b"parent")

    def test_example_producer(self):
        ex = os.path.join(PYDIR, "examples", "producer.py")
        env = dict(os.environ)
        env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
        r = subprocess.run([sys.executable, ex, "--socket", self.broker.socket,
                            "--queue", "crc", "--procs", "3",
                            "--messages", "300", "--size", "200"],
                           env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=120)
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("900 messages verified", out)


class TestKV(BrokerTest):
    def test_get_put_delete(self):
        q = self.open("kv")
        self.assertIsNone(q.kv_get(b"py:a"))
        q.kv_put(b"py:a", b"one")
        self.assertEqual(q.kv_get(b"py:a"), b"one")
        q.kv_put(b"py:a", b"two!")
        self.assertEqual(q.kv_get(b"py:a", cap=2), b"tw")
        self.assertTrue(q.kv_delete(b"py:a"))
        self.assertFalse(q.kv_delete(b"py:a"))
        self.assertIsNone(q.kv_get(b"py:a"))

    def test_batches(self):
        q = self.open("kv")
        pairs = {b"py:%d" % i: bytes([i % 251]) * (i % 60 + 1)
                 for i in range(500)}
        q.kv_mput(pairs)
        keys = list(pairs) + [b"py:missing"]
        got = q.kv_mget(keys)
        self.assertEqual(got[:-1], [pairs[k] for k in keys[:-1]])
        self.assertIsNone(got[-1])
        self.assertEqual(q.kv_mdelete([b"py:1", b"py:missing"]),
                         [True, False])

    def test_refusals(self):
        q = self.open("kv")
        with self.assertRaises(gpuq.KeySizeError):
            q.kv_put(b"k" * 33, b"x")
        with self.assertRaises(gpuq.ValueSizeError):
            q.kv_put(b"py:v", b"x" * 65)
        with self.assertRaises(gpuq.InvalidArgument):
            self.open("echo").kv_get(b"py:a")


class TestDeadBroker(unittest.TestCase):
    def setUp(self):
        self.broker = Broker(["echo,handler=echo,slot_bytes=64,capacity=64"])
        self.addCleanup(self.broker.cleanup)

    def test_sigkill(self):
        c = gpuq.connect(self.broker.socket)
        self.addCleanup(c.close)
        q = c.open("echo")
        loan_q = c.open("echo")
        self.assertEqual(q.wait(q.enqueue(b"alive"), 5), b"alive")
        done = q.enqueue(b"done before the kill, read after it")
        deadline = time.monotonic() + 5
        while q.stats().completed < 2:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.005)
        loan = loan_q.reserve(1)
        self.broker.kill(signal.SIGKILL)
        # a result completed before the kill can still be read
        self.assertEqual(q.wait(done, 5), b"done before the kill, read after it")
        t0 = time.monotonic()
        with self.assertRaises(gpuq.BrokerDead) as cm:
            while time.monotonic() - t0 < 5:
                q.enqueue(b"x", timeout=0.1)
                time.sleep(0.001)
        self.assertEqual(cm.exception.name, "GPUQ_EBROKERDEAD")
        self.assertIsInstance(cm.exception, ConnectionError)
        self.assertLess(time.monotonic() - t0, 3)
        with self.assertRaises(gpuq.BrokerDead):
            q.poll(timeout=1)
        with self.assertRaises(gpuq.BrokerDead):
            loan.write(0, b"x")
            loan.commit()
        with self.assertRaises(gpuq.BrokerDead):
            c.open("echo")
        # a new connection finds no broker (or a dying one, docs/api.md)
        with self.assertRaises((gpuq.NoBroker, gpuq.BrokerDead)):
            gpuq.connect(self.broker.socket)
        q.close()
        c.close()


if __name__ == "__main__":
    unittest.main()
