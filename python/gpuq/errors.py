"""gpuq's error codes as Python exceptions.

Every failing call raises :class:`Error` or a subclass of it.  ``e.code`` is
the library's return code, ``e.name`` its symbolic name as gpuq_err_name()
gives it ("GPUQ_EFULL", or "EINVAL" for a negated errno) and ``e.message``
what gpuq_strerror() says.

The table below is gpuq.h's GPUQ_ERROR_LIST; the test suite checks that it
agrees with the loaded library.
"""

import errno as _errno

from . import _lib

# name: (code, message) -- libclient/gpuq.h, GPUQ_ERROR_LIST
_GPUQ_ERRORS = [
    ("GPUQ_EFULL", -1001, "queue ring is full"),
    ("GPUQ_ETIMEDOUT", -1002, "timed out"),
    ("GPUQ_EAGAIN", -1003, "result not ready yet"),
    ("GPUQ_ETOOBIG", -1004, "payload larger than the queue's slot size"),
    ("GPUQ_EEMPTY", -1005, "zero-length payload"),
    ("GPUQ_ENOQUEUE", -1006, "no queue with that name"),
    ("GPUQ_ENOBROKER", -1007,
     "broker is not running (cannot connect to socket)"),
    ("GPUQ_EBROKERDEAD", -1008, "broker died or restarted (heartbeat lost)"),
    ("GPUQ_EPROTO", -1009, "garbled or truncated control message"),
    ("GPUQ_EVERSION", -1010,
     "protocol or shared-memory layout version mismatch"),
    ("GPUQ_EDENIED", -1011, "broker refused credentials (uid/gid not allowed)"),
    ("GPUQ_ETOOMANY", -1012, "too many clients attached to the queue"),
    ("GPUQ_ESHUTDOWN", -1013, "broker is draining or shutting down"),
    ("GPUQ_ECQFULL", -1014,
     "too many unread results; read some before enqueuing"),
    ("GPUQ_ECONFIG", -1015, "invalid configuration"),
    ("GPUQ_EHANDLER", -1016,
     "handler failed every attempt; message dead-lettered"),
    ("GPUQ_ECUDA", -1017, "CUDA error"),
    ("GPUQ_ENOTFOUND", -1018,
     "no such message (not in flight on this handle, or no such dead letter)"),
    ("GPUQ_EBACKEND", -1020, "backend unavailable or failed"),
    ("GPUQ_EDEVICE", -1021,
     "the GPU faulted while the message was in flight; it was not completed"),
    ("GPUQ_EKEYSIZE", -1022, "table key empty or longer than 32 bytes"),
    ("GPUQ_EVALSIZE", -1023,
     "table value larger than the table's value size"),
    ("GPUQ_ETABLEFULL", -1024,
     "hash table full around this key; nothing changed"),
    ("GPUQ_ENOKEY", -1025, "no such key in the table"),
    ("GPUQ_EEXISTS", -1026, "key already in the table"),
    ("GPUQ_ECASFAIL", -1027,
     "compare-and-swap: the value differs; nothing changed"),
]

#: gpuq's own error names -> codes, e.g. ERRORS["GPUQ_EFULL"] == -1001.
ERRORS = {name: code for name, code, _ in _GPUQ_ERRORS}
#: codes -> messages, as gpuq_strerror() returns them.
MESSAGES = {code: msg for _, code, msg in _GPUQ_ERRORS}

#: Codes at or below this are gpuq's own; (ERR_BASE, 0) are negated errnos.
ERR_BASE = -1000


class Error(Exception):
    """A gpuq call failed.  code: the return code; name: e.g. "GPUQ_EFULL";
    message: gpuq_strerror(code)."""

    def __init__(self, code, name=None, message=None):
        if name is None:
            name = err_name(code)
        if message is None:
            message = strerror(code)
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.name, self.message)

    def __repr__(self):
        return "%s(%d, %r, %r)" % (type(self).__name__, self.code, self.name,
                                   self.message)

    def __reduce__(self):
        return (type(self), (self.code, self.name, self.message))


def _cls(name, bases, doc):
    return type(name, bases, {"__doc__": doc, "__module__": "gpuq"})


# Python name, gpuq name or errno, extra builtin base, docstring
_SUBCLASSES = [
    ("Full", "GPUQ_EFULL", None, "The ring is full and timeout was 0."),
    ("Timeout", "GPUQ_ETIMEDOUT", TimeoutError,
     "No room, or no result, within the timeout."),
    ("NotReady", "GPUQ_EAGAIN", None,
     "result(): the message has not completed yet."),
    ("TooBig", "GPUQ_ETOOBIG", None,
     "Payload longer than the queue's slot_bytes."),
    ("EmptyPayload", "GPUQ_EEMPTY", None, "Zero-length payload."),
    ("NoQueue", "GPUQ_ENOQUEUE", None, "The broker has no queue by that name."),
    ("NoBroker", "GPUQ_ENOBROKER", ConnectionError,
     "Nothing listens on the socket."),
    ("BrokerDead", "GPUQ_EBROKERDEAD", ConnectionError,
     "The broker died or restarted; close, reconnect and resubmit."),
    ("ProtocolError", "GPUQ_EPROTO", None,
     "Garbled or truncated control message."),
    ("VersionMismatch", "GPUQ_EVERSION", None,
     "Client and broker speak different protocol or layout versions."),
    ("Denied", "GPUQ_EDENIED", PermissionError,
     "The broker refused this uid/gid."),
    ("TooMany", "GPUQ_ETOOMANY", None,
     "Too many clients (connections or handles on the queue)."),
    ("Shutdown", "GPUQ_ESHUTDOWN", None, "The broker is draining."),
    ("CompletionsFull", "GPUQ_ECQFULL", None,
     "cq_capacity results of this handle are unread: read some first."),
    ("ConfigError", "GPUQ_ECONFIG", None, "Invalid configuration."),
    ("HandlerFailed", "GPUQ_EHANDLER", None,
     "The handler failed every attempt; the message was dead-lettered."),
    ("CudaError", "GPUQ_ECUDA", None, "CUDA error."),
    ("NotFound", "GPUQ_ENOTFOUND", None,
     "No such message in flight on this handle (never sent, or already read)."),
    ("BackendError", "GPUQ_EBACKEND", None, "Backend unavailable or failed."),
    ("DeviceFault", "GPUQ_EDEVICE", None,
     "The GPU faulted while the message was in flight; it was not completed."),
    ("KeySizeError", "GPUQ_EKEYSIZE", ValueError,
     "A table key is empty or longer than 32 bytes."),
    ("ValueSizeError", "GPUQ_EVALSIZE", ValueError,
     "A table value is larger than the table's value size."),
    ("TableFull", "GPUQ_ETABLEFULL", None,
     "The hash table is full around this key; nothing changed."),
    ("NoKey", "GPUQ_ENOKEY", KeyError, "No such key in the table."),
    ("KeyExists", "GPUQ_EEXISTS", None, "The key is already in the table."),
    ("CasFailed", "GPUQ_ECASFAIL", None,
     "Compare-and-swap: the value differs; nothing changed."),
    ("Busy", "EBUSY", None,
     "A loan is open on the handle: commit it first."),
    ("InvalidArgument", "EINVAL", ValueError, "The library rejected an argument."),
]

_BY_CODE = {}
_CLASSES = {}
for _py, _name, _base, _doc in _SUBCLASSES:
    _bases = (Error,) if _base is None else (Error, _base)
    _c = _cls(_py, _bases, _doc)
    _CLASSES[_py] = _c
    _BY_CODE[ERRORS[_name] if _name in ERRORS else -getattr(_errno, _name)] = _c
    globals()[_py] = _c
del _py, _name, _base, _doc, _bases, _c

#: Exception class for each code that has its own subclass.
EXCEPTIONS = dict(_BY_CODE)


def err_name(code):
    """gpuq_err_name(code): "GPUQ_EFULL", "EINVAL", "OK" or "UNKNOWN"."""
    try:
        return _lib.load().gpuq_err_name(code).decode()
    except _lib.LibraryNotFound:
        for name, c in ERRORS.items():
            if c == code:
                return name
        if code == 0:
            return "OK"
        if ERR_BASE < code < 0:
            return _errno.errorcode.get(-code, "UNKNOWN")
        return "UNKNOWN"


def strerror(code):
    """gpuq_strerror(code): the message for any return code."""
    try:
        return _lib.load().gpuq_strerror(code).decode(errors="replace")
    except _lib.LibraryNotFound:
        import os
        if code in MESSAGES:
            return MESSAGES[code]
        if code == 0:
            return "success"
        if ERR_BASE < code < 0:
            return os.strerror(-code)
        return "unknown error"


def error(code):
    """The exception instance for a negative return code."""
    return _BY_CODE.get(code, Error)(code)


def check(rc):
    """Raise for a negative return code, else return it."""
    if rc < 0:
        raise error(rc)
    return rc
