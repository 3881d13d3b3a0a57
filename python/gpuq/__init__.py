"""gpuq: Python binding for libgpuqclient, the producer side of gpuq.

    import gpuq
    with gpuq.connect("/tmp/gpuq.sock") as client, client.open("jobs") as q:
        mid = q.enqueue(b"hello, gpuq", timeout=0.1)
        crc = gpuq.schema.checksum_result(q.wait(mid, timeout=1))

A ctypes binding: it loads libgpuqclient.so.0 from $GPUQ_LIBRARY, or where
ctypes.util.find_library("gpuqclient") and the dynamic loader find it, or
from /usr/local/lib, /usr/lib.  The same calls work whatever backend (cpu,
cuda) the broker runs the queue on; Queue.info().backend says which.
Errors are raised as gpuq.Error subclasses named after gpuq's codes.
"""

from . import schema
from ._lib import LibraryNotFound
from .client import (Client, Completion, Loan, Queue, QueueInfo, Stats,
                     connect)
from .errors import (ERR_BASE, ERRORS, EXCEPTIONS, MESSAGES, BackendError,
                     BrokerDead, Busy, CompletionsFull, ConfigError,
                     CudaError, Denied, DeviceFault, EmptyPayload, Error,
                     Full,
                     CasFailed, HandlerFailed, KeyExists, KeySizeError,
                     NoKey, TableFull, ValueSizeError, InvalidArgument, NoBroker, NoQueue,
                     NotFound, NotReady, ProtocolError, Shutdown, Timeout,
                     TooBig, TooMany, VersionMismatch, err_name, strerror)

__version__ = "0.1.0"

__all__ = [
    "connect", "Client", "Queue", "Loan", "Completion", "QueueInfo", "Stats",
    "Error", "ERRORS", "EXCEPTIONS", "MESSAGES", "ERR_BASE", "err_name",
    "strerror", "version", "default_socket", "library_path",
    "LibraryNotFound", "schema",
    "Full", "Timeout", "NotReady", "TooBig", "EmptyPayload", "NoQueue",
    "NoBroker", "BrokerDead", "ProtocolError", "VersionMismatch", "Denied",
    "TooMany", "Shutdown", "CompletionsFull", "ConfigError", "HandlerFailed",
    "CudaError", "NotFound", "BackendError", "DeviceFault", "Busy",
    "InvalidArgument", "KeySizeError", "ValueSizeError", "TableFull",
    "NoKey", "KeyExists", "CasFailed",
]


def version() -> str:
    """The loaded library's version (gpuq_version)."""
    from . import _lib
    return _lib.load().gpuq_version().decode()


def default_socket() -> str:
    """The socket gpuq.connect() uses when given none (gpuq_default_socket):
    $GPUQ_SOCKET, else $XDG_RUNTIME_DIR/gpuq/gpuqd.sock, /run/gpuq/gpuqd.sock
    for root, /tmp/gpuq-<uid>/gpuqd.sock otherwise."""
    import ctypes
    import os
    from . import _lib
    buf = ctypes.create_string_buffer(4096)
    from .errors import check
    check(_lib.load().gpuq_default_socket(buf, len(buf)))
    return os.fsdecode(buf.value)


def library_path() -> str:
    """Which libgpuqclient was loaded (loading it if need be)."""
    from . import _lib
    return _lib.path()
