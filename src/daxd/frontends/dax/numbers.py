"""DynamoDB numbers on the DAX wire: canonical text, CBOR forms and LexDecimal.

The clients send one number in several encodings (docs/protocol.md, "Keys and values"): CBOR
ints, tag 2/3 bignums, tag 4 decimal fractions that keep trailing zeros
(``"1.50"`` -> ``[-2, 150]``) and, from JS, float64. The rest of daxd speaks
DynamoDB JSON, where numbers are strings, so every form is turned into the
*canonical* text DynamoDB itself returns (as DynamoDB does: ``"1.50"`` -> ``"1.5"``,
``"1e3"`` -> ``"1000"``, ``"-0"`` -> ``"0"``): plain notation, no exponent, no
trailing fractional zeros. Equal numbers therefore give equal strings, which is
what cache keys need.

Replies use the forms every client renders as plain digits (§4.1, addendum C1):
an int below 2**64, otherwise tag 4 with a non-positive exponent and trailing
zeros stripped; integers of more than 38 digits (>= 1E+38) are tag 2/3
bignums. Range keys of type N use LexDecimal (§4.3) built from the canonical
text, keeping integer digits down to the units (addendum C2) up to 38 digits.
"""

from __future__ import annotations

import math
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    Context,
    Decimal,
    DecimalException,
    InvalidOperation,
    localcontext,
)
from typing import Any

from cbor2 import CBORTag

from daxd.model.errors import ProtocolError, ValidationException

#: DynamoDB's limits: 38 significant digits, magnitude 1E-130 .. <1E+126.
MAX_DIGITS = 38
_MIN_ADJUSTED = -130
_MAX_ADJUSTED = 125
_U64 = 1 << 64
_EXACT = Context(prec=400, Emax=MAX_EMAX, Emin=MIN_EMIN)


def canonical(value: Any) -> str:
    """The canonical DynamoDB text for a decoded CBOR number.

    Raises:
        ValidationException: not a number, not finite, or outside DynamoDB's range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        raise ValidationException(f"expected a number, got {type(value).__name__}")
    if isinstance(value, int):
        return _canonical_int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationException("numbers must be finite")
        value = Decimal(repr(value))  # shortest round-trip text, as JS meant it
    return canonical_decimal(value)


def _canonical_int(value: int) -> str:
    if -_U64 < value < _U64:  # fast path: at most 20 digits
        return str(value)
    return canonical_decimal(Decimal(value))


def canonical_decimal(value: Decimal) -> str:
    """Normalise a Decimal to DynamoDB's canonical text, checking its range."""
    if not value.is_finite():
        raise ValidationException("numbers must be finite")
    if not value:
        return "0"
    try:
        with localcontext(_EXACT):
            reduced = value.normalize()
    except DecimalException:
        raise ValidationException("number out of range") from None
    digits = len(reduced.as_tuple().digits)
    if digits > MAX_DIGITS:
        raise ValidationException("Attempting to store more than 38 significant digits in a Number")
    adjusted = reduced.adjusted()
    if adjusted > _MAX_ADJUSTED:
        raise ValidationException(
            "Number overflow. Attempting to store a number with magnitude larger than supported range")
    if adjusted < _MIN_ADJUSTED:
        raise ValidationException(
            "Number underflow. Attempting to store a number with magnitude smaller than supported range")
    return format(reduced, "f")


def canonical_text(text: str) -> str:
    """Canonicalise a number given as DynamoDB JSON text (e.g. from a key)."""
    try:
        return canonical_decimal(Decimal(text))
    except InvalidOperation:
        raise ValidationException(f"invalid number {text!r}") from None


def to_cbor(text: str) -> int | CBORTag:
    """The reply form of a DynamoDB number string (int or tag 4, never a float)."""
    digits = text[1:] if text[:1] == "-" else text
    if digits.isdigit():
        value = int(text)
        if -_U64 < value < _U64 or len(text.lstrip("-")) > MAX_DIGITS:
            # More than 38 digits: a tag-4 mantissa that long makes the Python
            # client trap (decimal.Rounded), so cbor2 writes a tag 2/3 bignum,
            # which Python and Go render plainly (JS as "1e+38").
            return value
        return CBORTag(4, [0, value])
    whole, dot, fraction = digits.partition(".")
    if dot and whole.isdigit() and fraction.isdigit():  # fast path: plain decimal text
        fraction = fraction.rstrip("0")
        if fraction and len(whole.lstrip("0")) + len(fraction) <= MAX_DIGITS:
            mantissa = int(whole + fraction)
            return CBORTag(4, [-len(fraction), -mantissa if digits is not text else mantissa])
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValidationException(f"invalid number {text!r}") from None
    if not number.is_finite():
        raise ValidationException(f"invalid number {text!r}")
    return _decimal_to_cbor(number)


def _decimal_to_cbor(number: Decimal) -> int | CBORTag:
    with localcontext(_EXACT):
        if number == number.to_integral_value():
            return to_cbor(str(int(number)))
        reduced = number.normalize()
    sign, digits, exponent = reduced.as_tuple()
    mantissa = int("".join(map(str, digits)))
    assert isinstance(exponent, int)
    return CBORTag(4, [exponent, -mantissa if sign else mantissa])


# ---------------------------------------------------------------- LexDecimal

def lex_encode(text: str) -> bytes:
    """LexDecimal bytes (§4.3) for a DynamoDB number string, canonical digits."""
    number = Decimal(canonical_text(text))
    if not number:
        return b"\x80"
    sign, digit_tuple, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    if exponent < 0 or len(digits) > MAX_DIGITS:
        # Strip zeros that are not integer units: fractional ones always, and
        # integer ones only past 38 digits (the clients decode with 38-digit
        # precision and would trap; such a key renders as "1E+38" either way).
        digits = digits.rstrip("0") or "0"
        exponent = number.adjusted() + 1 - len(digits)
    position = len(digits) + exponent
    return _lex_header(position, bool(sign)) + _lex_groups(digits, bool(sign))


def _lex_header(position: int, negative: bool) -> bytes:
    if -62 <= position < 62:
        return bytes([0x3F - position if negative else 0xC0 + position])
    if negative:
        marker = 0x7E if position < 0 else 0x01
        word = (position % (1 << 32)) ^ 0x7FFFFFFF
    else:
        marker = 0x81 if position < 0 else 0xFE
        word = (position % (1 << 32)) ^ 0x80000000
    return bytes([marker]) + word.to_bytes(4, "big")


def _lex_groups(digits: str, negative: bool) -> bytes:
    padded = digits + "0" * (-len(digits) % 3)
    groups = [int(padded[i:i + 3]) for i in range(0, len(padded), 3)]
    terminator = (len(digits) - 1) % 3
    codes = [1011 - g for g in groups] + [1023 - terminator] if negative else \
        [g + 12 for g in groups] + [terminator]
    bits = 0
    for code in codes:
        bits = (bits << 10) | code
    nbits = 10 * len(codes)
    pad = -nbits % 8
    return (bits << pad).to_bytes((nbits + pad) // 8, "big")


def lex_decode(data: bytes) -> str:
    """Decode LexDecimal bytes to canonical DynamoDB text.

    Raises:
        ProtocolError: the bytes are not a LexDecimal.
    """
    if not data:
        raise ProtocolError("empty LexDecimal")
    first = data[0]
    if first in (0x80, 0x7F):
        return "0"
    negative = first < 0x80
    position, rest = _lex_read_header(data, negative)
    digits = _lex_read_groups(rest, negative)
    text = ("-" if negative else "") + "0." + digits + f"E{position}"
    return canonical_text(text)


def _lex_read_header(data: bytes, negative: bool) -> tuple[int, bytes]:
    first = data[0]
    if first in (0x00, 0xFF):
        raise ProtocolError("null LexDecimal in a key")
    if first in (0x01, 0x7E, 0x81, 0xFE):
        if len(data) < 5:
            raise ProtocolError("truncated LexDecimal header")
        word = int.from_bytes(data[1:5], "big") ^ (0x7FFFFFFF if negative else 0x80000000)
        position = word - (1 << 32) if word >= 1 << 31 else word
        return position, data[5:]
    return (0x3F - first if negative else first - 0xC0), data[1:]


def _lex_read_groups(rest: bytes, negative: bool) -> str:
    bits = int.from_bytes(rest, "big") if rest else 0
    nbits = 8 * len(rest)
    out: list[str] = []
    offset = nbits
    while offset >= 10:
        offset -= 10
        code = (bits >> offset) & 0x3FF
        value = 1023 - code if negative else code
        if value <= 2:  # terminator: the last group keeps value+1 digits
            if not out:
                raise ProtocolError("LexDecimal without digits")
            out[-1] = out[-1][: value + 1]
            return "".join(out)
        group = (1011 - code) if negative else (code - 12)
        if not 0 <= group <= 999:
            raise ProtocolError("invalid LexDecimal digit group")
        out.append(f"{group:03d}")
    raise ProtocolError("LexDecimal without terminator")
