"""Finding and describing libgpuqclient for ctypes.

The structs below mirror libclient/gpuq.h field for field; the test suite
compiles a small C program against the header and checks every size and
offset against them.
"""

import ctypes
import ctypes.util
import os
import sys
import sysconfig
import threading

c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64
c_i32 = ctypes.c_int32
c_int = ctypes.c_int
c_size = ctypes.c_size_t
c_void_p = ctypes.c_void_p
c_char_p = ctypes.c_char_p


class gpuq_queue_info(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char * 64),
        ("capacity", c_u32),
        ("slot_bytes", c_u32),
        ("result_bytes", c_u32),
        ("cq_capacity", c_u32),
        ("handler", ctypes.c_char * 32),
        ("backend", ctypes.c_char * 16),
        ("broker_epoch", c_u64),
        ("ordered", c_u32),
        ("rings", c_u32),
        ("max_attempts", c_u32),
    ]


class gpuq_iov(ctypes.Structure):
    _fields_ = [("data", c_void_p), ("len", c_size), ("key", c_u64)]


class gpuq_loan(ctypes.Structure):
    _fields_ = [
        ("count", c_u32),
        ("slot_bytes", c_u32),
        ("first_id", c_u64),
        ("ticket", c_u64),
        ("key", c_u64),
    ]


class gpuq_completion(ctypes.Structure):
    _fields_ = [
        ("id", c_u64),
        ("status", c_i32),
        ("len", c_u32),
        ("result", c_void_p),
        ("attempts", c_u32),
        ("worker", c_u32),
        ("seq", c_u64),
    ]


class gpuq_stats(ctypes.Structure):
    _fields_ = [
        ("enqueued", c_u64),
        ("completed", c_u64),
        ("retried", c_u64),
        ("dead_lettered", c_u64),
        ("dlq_pending", c_u64),
        ("reclaimed", c_u64),
        ("full_events", c_u64),
        ("depth", c_u64),
        ("capacity", c_u32),
        ("clients", c_u32),
        ("heartbeat_age_ns", c_u64),
    ]


class gpuq_kv_item(ctypes.Structure):
    _fields_ = [
        ("key", c_void_p),
        ("klen", c_u32),
        ("vlen", c_u32),
        ("val", c_void_p),
        ("status", c_int),
    ]


STRUCTS = {
    "gpuq_kv_item": gpuq_kv_item,
    "gpuq_queue_info": gpuq_queue_info,
    "gpuq_iov": gpuq_iov,
    "gpuq_loan": gpuq_loan,
    "gpuq_completion": gpuq_completion,
    "gpuq_stats": gpuq_stats,
}

P = ctypes.POINTER
# name: (restype, argtypes)
PROTOTYPES = {
    "gpuq_strerror": (c_char_p, [c_int]),
    "gpuq_err_name": (c_char_p, [c_int]),
    "gpuq_version": (c_char_p, []),
    "gpuq_default_socket": (c_int, [ctypes.c_char_p, c_size]),
    "gpuq_connect": (c_int, [c_char_p, P(c_void_p)]),
    "gpuq_disconnect": (None, [c_void_p]),
    "gpuq_open": (c_int, [c_void_p, c_char_p, P(c_void_p)]),
    "gpuq_close": (None, [c_void_p]),
    "gpuq_queue_info_get": (c_int, [c_void_p, P(gpuq_queue_info)]),
    "gpuq_enqueue": (c_int, [c_void_p, c_void_p, c_size, P(c_u64), c_int]),
    "gpuq_enqueue_key": (c_int, [c_void_p, c_u64, c_void_p, c_size,
                                 P(c_u64), c_int]),
    "gpuq_enqueue_batch": (c_int, [c_void_p, P(gpuq_iov), c_size, P(c_u64),
                                   c_int]),
    "gpuq_reserve": (c_int, [c_void_p, c_u32, P(gpuq_loan), c_int]),
    "gpuq_reserve_key": (c_int, [c_void_p, c_u64, c_u32, P(gpuq_loan),
                                 c_int]),
    "gpuq_loan_slot": (c_void_p, [c_void_p, P(gpuq_loan), c_u32]),
    "gpuq_commit": (c_int, [c_void_p, P(gpuq_loan), P(c_u32)]),
    "gpuq_vram_handle": (c_int, [c_void_p, c_void_p, c_size]),
    "gpuq_vram_offset": (ctypes.c_int64, [c_void_p, P(gpuq_loan), c_u32]),
    "gpuq_commit_device": (c_int, [c_void_p, P(gpuq_loan), P(c_u32)]),
    "gpuq_poll": (c_int, [c_void_p, P(gpuq_completion), c_size]),
    "gpuq_result": (c_int, [c_void_p, c_u64, c_void_p, c_size, P(c_size)]),
    "gpuq_wait": (c_int, [c_void_p, c_u64, c_void_p, c_size, P(c_size),
                          c_int]),
    "gpuq_inflight": (c_u64, [c_void_p]),
    "gpuq_stats_get": (c_int, [c_void_p, P(gpuq_stats)]),
    "gpuq_kv_mget": (c_int, [c_void_p, P(gpuq_kv_item), c_size, c_int]),
    "gpuq_kv_mput": (c_int, [c_void_p, P(gpuq_kv_item), c_size, c_int]),
    "gpuq_kv_mdelete": (c_int, [c_void_p, P(gpuq_kv_item), c_size, c_int]),
}


class LibraryNotFound(OSError):
    """libgpuqclient could not be loaded (see gpuq.library_candidates())."""


def candidates():
    """Where the library is looked for, in order."""
    out = []
    env = os.environ.get("GPUQ_LIBRARY")
    if env:
        # An explicit choice is the only one tried: a wrong path should fail
        # loudly rather than silently load some other copy.
        return [env]
    found = ctypes.util.find_library("gpuqclient")
    if found:
        out.append(found)
    # The dynamic loader's own search ($LD_LIBRARY_PATH, ld.so.cache).
    out.append("libgpuqclient.so.0")
    dirs = ["/usr/local/lib", "/usr/local/lib64"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        dirs += ["/usr/local/lib/" + multiarch, "/usr/lib/" + multiarch]
    dirs += ["/usr/lib64", "/usr/lib", os.path.join(sys.prefix, "lib")]
    # An in-tree build: python/gpuq/ -> ../../libclient/.libs
    here = os.path.dirname(os.path.abspath(__file__))
    dirs.append(os.path.join(here, "..", "..", "libclient", ".libs"))
    for d in dirs:
        for name in ("libgpuqclient.so.0", "libgpuqclient.so"):
            p = os.path.join(d, name)
            if p not in out and os.path.exists(p):
                out.append(p)
    return out


_lock = threading.Lock()
_lib = None
_path = None


def load():
    """The loaded library (loaded on first use), with prototypes set."""
    global _lib, _path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for cand in candidates():
            try:
                lib = ctypes.CDLL(cand)
            except OSError as e:
                tried.append("%s (%s)" % (cand, e))
                continue
            try:
                for name, (res, args) in PROTOTYPES.items():
                    fn = getattr(lib, name)
                    fn.restype = res
                    fn.argtypes = args
            except AttributeError as e:
                tried.append("%s (not libgpuqclient: %s)" % (cand, e))
                continue
            _path = cand
            _lib = lib
            return lib
        raise LibraryNotFound(
            "cannot load libgpuqclient; set GPUQ_LIBRARY to the path of "
            "libgpuqclient.so.0. Tried: " + "; ".join(tried or ["nothing"]))


def path():
    load()
    return _path
