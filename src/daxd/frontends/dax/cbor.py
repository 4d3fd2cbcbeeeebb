"""Bounded, incremental CBOR framing for the DAX protocol.

Theory of operation
-------------------
DAX has no length prefix: a request is a run of top-level CBOR items whose
count depends on the method (docs/protocol.md, "Framing"). To know whether a request
is complete we walk the item headers without materialising anything
(:func:`scan`). The walk

* returns the offset just past the item, or raises :class:`Incomplete` with the
  number of bytes that must be buffered before another attempt can succeed, so
  a large string arriving in many segments is not rescanned for every segment;
* refuses a declared length that would run past ``limit`` (the frame limit)
  *before* any byte of it is buffered, so a hostile header cannot make the
  caller hold more than the limit;
* accepts only the subset the clients send (§2.1, §2.2): definite strings,
  arrays and maps of any length form, indefinite arrays and maps, the tags
  2, 3, 4 and 3321-3324, ``false``/``true``/``null``/``undefined`` and floats.
  Everything else (chunked strings, other tags, simple values, stray breaks,
  nesting deeper than :data:`MAX_DEPTH`) is a :class:`ProtocolError`.

Once an item is known to be complete and well-formed it is materialised with
cbor2 (:func:`load`), which is fast; the scan guarantees cbor2 never sees an
allocation larger than the slice itself or a tag we do not want (tag 5, for
instance, would compute ``2 ** exponent``).
"""

from __future__ import annotations

from typing import Any

import cbor2

from daxd.model.errors import ProtocolError

#: Deepest nesting accepted. DynamoDB documents nest at most 32 levels; the
#: DAX envelope and S-expressions add a handful (compare cbor2's fuzzers).
MAX_DEPTH = 64
#: Longest bignum magnitude accepted (bytes). 38 decimal digits need 16 bytes;
#: the slack lets an out-of-range number reach validation with a precise message.
MAX_BIGNUM_BYTES = 64
#: Largest |exponent| of a tag-4 decimal fraction (DynamoDB's range is 1E-130..1E+126).
MAX_DECIMAL_EXPONENT = 10_000

TAG_STRING_SET = 3321
TAG_NUMBER_SET = 3322
TAG_BINARY_SET = 3323
TAG_PATH_ORDINAL = 3324
_ALLOWED_TAGS = frozenset({2, 3, 4, TAG_STRING_SET, TAG_NUMBER_SET, TAG_BINARY_SET, TAG_PATH_ORDINAL})
_SIMPLE_OK = frozenset({20, 21, 22, 23})  # false, true, null, undefined
_FLOAT_SIZES = {25: 2, 26: 4, 27: 8}
_ARG_SIZES = {24: 1, 25: 2, 26: 4, 27: 8}
_BREAK = 0xFF


class Incomplete(Exception):
    """More bytes are needed; ``needed`` is the total buffer length to wait for."""

    def __init__(self, needed: int) -> None:
        super().__init__(needed)
        self.needed = needed


class FrameTooLarge(ProtocolError):
    """A request would run past the frame limit: the peer is told so before the connection closes."""


def _header(buf: bytes | bytearray | memoryview, pos: int, limit: int) -> tuple[int, int, int]:
    """Read one header at ``pos``: returns (major type, argument, next offset).

    The argument is -1 for the indefinite-length marker (minor 31).
    """
    if pos >= len(buf):
        raise Incomplete(pos + 1)
    initial = buf[pos]
    major, minor = initial >> 5, initial & 0x1F
    if minor < 24:
        return major, minor, pos + 1
    if minor == 31:
        return major, -1, pos + 1
    size = _ARG_SIZES.get(minor)
    if size is None:
        raise ProtocolError(f"reserved CBOR additional info {minor} at offset {pos}")
    end = pos + 1 + size
    if end > len(buf):
        if end > limit:
            raise FrameTooLarge("CBOR header runs past the frame limit")
        raise Incomplete(end)
    return major, int.from_bytes(buf[pos + 1:end], "big"), end


def scan(buf: bytes | bytearray | memoryview, pos: int, limit: int, depth: int = 0) -> int:
    """Return the offset just past the well-formed item starting at ``pos``.

    Args:
        buf: the buffered bytes.
        pos: where the item starts.
        limit: the offset no item may extend beyond (frame start + frame limit).
        depth: current nesting (callers pass 0).

    Raises:
        Incomplete: the item is not fully buffered yet (and would fit the limit).
        ProtocolError: the bytes are not in the accepted subset, or too large.
    """
    if depth > MAX_DEPTH:
        raise ProtocolError("CBOR nesting too deep")
    if pos < len(buf):  # fast path: small ints and short strings, most request items
        initial = buf[pos]
        if initial < 0x18 or 0x20 <= initial < 0x38:
            return pos + 1
        if 0x40 <= initial < 0x58 or 0x60 <= initial < 0x78:
            return _scan_string(buf, pos + 1, initial & 0x1F, limit)
    start = pos
    major, arg, pos = _header(buf, pos, limit)
    if major in (0, 1):
        if arg < 0:
            raise ProtocolError("indefinite-length integer")
        return pos
    if major in (2, 3):
        return _scan_string(buf, pos, arg, limit)
    if major in (4, 5):
        return _scan_container(buf, pos, arg * (major - 3), limit, depth)
    if major == 6:
        return _scan_tag(buf, pos, arg, limit, depth)
    return _scan_simple(buf[start] & 0x1F, pos, arg)


def _scan_string(buf: bytes | bytearray | memoryview, pos: int, length: int, limit: int) -> int:
    if length < 0:
        raise ProtocolError("chunked CBOR strings are not accepted")
    end = pos + length
    if end > limit:
        raise FrameTooLarge(f"CBOR string of {length} bytes exceeds the frame limit")
    if end > len(buf):
        raise Incomplete(end)
    return end


def _scan_container(buf: bytes | bytearray | memoryview, pos: int, count: int, limit: int,
                    depth: int) -> int:
    """Scan ``count`` children (``count`` < 0: until a break byte)."""
    if count < 0:
        while True:
            if pos >= len(buf):
                raise Incomplete(pos + 1)
            if buf[pos] == _BREAK:
                return pos + 1
            pos = scan(buf, pos, limit, depth + 1)
    if pos + count > limit:  # every child takes at least one byte
        raise FrameTooLarge(f"CBOR container of {count} items exceeds the frame limit")
    for _ in range(count):
        pos = scan(buf, pos, limit, depth + 1)
    return pos


def _scan_tag(buf: bytes | bytearray | memoryview, pos: int, tag: int, limit: int, depth: int) -> int:
    if tag not in _ALLOWED_TAGS:
        raise ProtocolError(f"CBOR tag {tag} is not part of the DAX protocol")
    if tag in (2, 3):
        major, length, start = _header(buf, pos, limit)
        if major != 2 or length < 0 or length > MAX_BIGNUM_BYTES:
            raise ProtocolError("bignum must be a short definite byte string")
        return _scan_string(buf, start, length, limit)
    if tag == 4:
        return _scan_decimal(buf, pos, limit, depth)
    return scan(buf, pos, limit, depth + 1)


def _scan_decimal(buf: bytes | bytearray | memoryview, pos: int, limit: int, depth: int) -> int:
    """Tag 4 content must be ``[int exponent, int-or-bignum mantissa]`` with a sane exponent."""
    major, count, pos = _header(buf, pos, limit)
    if major != 4 or count != 2:
        raise ProtocolError("decimal fraction must be an array of 2")
    major, exponent, end = _header(buf, pos, limit)
    if major not in (0, 1) or exponent < 0 or exponent > MAX_DECIMAL_EXPONENT:
        raise ProtocolError("decimal fraction exponent out of range")
    mantissa_major, _arg, _next = _header(buf, end, limit)
    if mantissa_major not in (0, 1, 6):
        raise ProtocolError("decimal fraction mantissa must be an integer")
    if mantissa_major == 6 and buf[end] not in (0xC2, 0xC3):
        raise ProtocolError("decimal fraction mantissa must be an integer")
    return scan(buf, end, limit, depth + 1)


def _scan_simple(minor: int, pos: int, arg: int) -> int:
    """Major type 7: only false/true/null/undefined and floats (payload already consumed)."""
    if minor in _SIMPLE_OK or minor in _FLOAT_SIZES:
        return pos
    raise ProtocolError(f"CBOR simple value {minor if minor < 24 else arg} is not accepted")


def load(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one complete item (already checked with :func:`scan`).

    Any failure of the underlying decoder (e.g. invalid UTF-8 in a text string,
    an unhashable map key) becomes a :class:`ProtocolError`: no lower library
    exception escapes this module.
    """
    try:
        return cbor2.loads(data)
    except Exception as exc:  # boundary translation: cbor2 raises many types
        raise ProtocolError(f"undecodable CBOR item: {exc}") from None


def load_checked(data: bytes | bytearray | memoryview) -> Any:
    """Scan then decode a self-contained item that must fill ``data`` exactly.

    Used for the CBOR nested inside byte strings (compiled expressions,
    compound keys), which arrive complete.
    """
    end = scan_complete(data, 0)
    if end != len(data):
        raise ProtocolError("trailing bytes after CBOR item")
    return load(data)


def scan_complete(data: bytes | bytearray | memoryview, pos: int) -> int:
    """Like :func:`scan` on a buffer that will never grow: running out is an error."""
    try:
        return scan(data, pos, len(data))
    except Incomplete:
        raise ProtocolError("truncated CBOR item") from None


def read_uint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """Read a complete unsigned integer at ``pos``; returns (value, next offset)."""
    try:
        major, arg, end = _header(data, pos, len(data))
    except Incomplete:
        raise ProtocolError("truncated CBOR integer") from None
    if major != 0 or arg < 0:
        raise ProtocolError("expected an unsigned integer")
    return arg, end
