"""The message schema of gpuq's built-in handlers.

A message is raw bytes in, raw bytes out, the same on every backend (the CPU
threads and the CUDA kernel run one handler source; results agree bit for
bit).  The built-in handlers:

  echo      result = the payload
  checksum  result = CRC32C (Castagnoli, as iSCSI/ext4) of the payload,
            4 bytes little-endian
  vector    payload = float32[n] (native byte order, little-endian on every
            supported host); result = float32 sum, L2 norm, min, max

These helpers build payloads and decode results.
"""

import array
import struct
from collections import namedtuple

__all__ = ["crc32c", "checksum_result", "VectorResult", "vector_payload",
           "vector_result"]


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


_CRC_TABLE = _table()


def crc32c(data, crc: int = 0) -> int:
    """CRC32C of data (bytes-like), continuing from crc.  Pure Python: fine
    for checking results, slow for megabytes."""
    t = _CRC_TABLE
    c = crc ^ 0xFFFFFFFF
    for b in memoryview(data).cast("B"):
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def checksum_result(result: bytes) -> int:
    """The CRC32C in a checksum-handler result."""
    if len(result) != 4:
        raise ValueError("a checksum result is 4 bytes, got %d" % len(result))
    return struct.unpack("<I", result)[0]


VectorResult = namedtuple("VectorResult", "sum l2 min max")


def vector_payload(values) -> bytes:
    """float32 payload for the vector handler from an iterable of numbers
    (a numpy float32 array can be enqueued directly instead)."""
    return array.array("f", values).tobytes()


def vector_result(result: bytes) -> VectorResult:
    """Decode a vector-handler result."""
    if len(result) != 16:
        raise ValueError("a vector result is 16 bytes, got %d" % len(result))
    return VectorResult(*struct.unpack("<4f", result))
