"""Hypothesis round trips: AttributeValues, numbers, LexDecimal, keys, attribute lists, expressions.

Where possible the other side of the trip is the official client's own code
(its AttributeValueEncoder/Decoder, LexDecimal and expression compiler).
"""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import cbor2
import pytest
from amazondax import AttributeValueDecoder, AttributeValueEncoder, CborSExprGenerator, LexDecimal
from amazondax.DaxCborDecoder import DaxCborDecoder
from conftest import item_json, normalize_sets, to_boto
from hypothesis import given, settings
from hypothesis import strategies as st

from daxd.frontends.dax.attrs import AttributeListTable, from_cbor, to_cbor
from daxd.frontends.dax.cbor import load_checked
from daxd.frontends.dax.keys import KeySchema, decode_key, decode_values, encode_key, encode_values, key_pairs
from daxd.frontends.dax.numbers import canonical_text, lex_decode, lex_encode
from daxd.frontends.dax.sexpr import Renderer
from daxd.model.errors import ValidationException

# ------------------------------------------------------------ strategies

@st.composite
def decimals(draw: st.DrawFn) -> Decimal:
    """Any DynamoDB number: up to 38 significant digits, magnitude 1E-130 .. <1E+126."""
    digits = draw(st.integers(1, 38))
    coefficient = draw(st.integers(10 ** (digits - 1), 10 ** digits - 1))
    exponent = draw(st.integers(-130, 126 - digits))
    sign = draw(st.sampled_from([1, -1]))
    return Decimal(sign * coefficient).scaleb(exponent)


@st.composite
def number_texts(draw: st.DrawFn) -> str:
    """Number text in the forms applications write (exponents, trailing zeros, zero)."""
    value = draw(st.one_of(decimals(), st.just(Decimal(0)), st.integers(-(2 ** 70), 2 ** 70).map(Decimal)))
    form = draw(st.sampled_from(["str", "f", "e", "padded"]))
    if form == "f":
        return format(value, "f")
    if form == "e":
        return format(value, "e") if len(value.as_tuple().digits) <= 38 else str(value)
    if form == "padded" and "E" not in str(value) and value == value.to_integral_value() and abs(value) < 10 ** 30:
        return format(value.to_integral_value(), "f") + ".000"
    return str(value)


def canon(value: Decimal | str) -> str:
    return format(Decimal(value).normalize(), "f") if Decimal(value) else "0"


_b64 = st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())
_numbers = decimals().map(canon)
scalars = st.one_of(
    st.text(max_size=8).map(lambda s: {"S": s}), _numbers.map(lambda n: {"N": n}), _b64.map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}), st.just({"NULL": True}),
    st.lists(st.text(max_size=4), min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(_numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.lists(_b64, min_size=1, max_size=4, unique=True).map(lambda v: {"BS": v}),
)
attribute_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda v: {"L": v}),
    st.dictionaries(st.text(max_size=6), inner, max_size=4).map(lambda v: {"M": v})), max_leaves=12)


def client_decoder(data: bytes) -> DaxCborDecoder:
    state = {"done": False}

    def more(buf: bytearray, n: int) -> int:
        if state["done"]:
            return -1
        state["done"] = True
        buf += data
        return len(data)

    return DaxCborDecoder(more)


def numeric(av: Any) -> Any:
    """AV with numbers as Decimals: the client renders [-7, 1] as "1E-7", same number.

    Walks AttributeValues by their type, so a map member *named* "N" stays a member.
    """
    ((kind, value),) = av.items()
    if kind == "N":
        return {kind: Decimal(value)}
    if kind == "NS":
        return {kind: [Decimal(x) for x in value]}
    if kind == "M":
        return {kind: {name: numeric(member) for name, member in value.items()}}
    if kind == "L":
        return {kind: [numeric(member) for member in value]}
    return av


# ------------------------------------------------------------ attribute values

@given(attribute_values)
def test_attribute_value_round_trip(av: dict[str, Any]) -> None:
    assert from_cbor(load_checked(cbor2.dumps(to_cbor(av)))) == av


@given(attribute_values)
def test_client_encoded_values_decode(av: dict[str, Any]) -> None:
    client_bytes = AttributeValueEncoder.encode_attribute_value(to_boto(av))
    assert normalize_sets(from_cbor(load_checked(client_bytes))) == normalize_sets(av)


@given(attribute_values)
def test_our_values_decode_in_client(av: dict[str, Any]) -> None:
    decoded = AttributeValueDecoder._decode_attribute_value(client_decoder(cbor2.dumps(to_cbor(av))))
    assert normalize_sets(numeric(item_json({"v": decoded})["v"])) == normalize_sets(numeric(av))


@given(number_texts())
def test_client_number_forms_canonicalise(text: str) -> None:
    client_bytes = AttributeValueEncoder.encode_attribute_value({"N": text})
    assert from_cbor(load_checked(client_bytes)) == {"N": canon(text)}


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e120, max_value=1e120))
def test_js_float_numbers(value: float) -> None:
    if value and abs(value) < 1e-130:
        with pytest.raises(ValidationException):
            from_cbor(load_checked(cbor2.dumps(value)))
        return
    assert from_cbor(load_checked(cbor2.dumps(value))) == {"N": canon(Decimal(repr(value)))}


# ------------------------------------------------------------ LexDecimal

@given(number_texts())
def test_lex_decimal_against_client(text: str) -> None:
    client = LexDecimal.encode(LexDecimal.create_decimal(str(Decimal(text).normalize())))
    assert lex_decode(bytes(client)) == canon(text)
    ours = lex_encode(text)
    assert LexDecimal.decode_all(ours) == Decimal(text)
    assert lex_decode(ours) == canon(text)


@given(decimals(), decimals())
def test_lex_decimal_orders_numerically(a: Decimal, b: Decimal) -> None:
    ea, eb = lex_encode(str(a)), lex_encode(str(b))
    assert (ea < eb) == (a < b) and (ea == eb) == (a == b)


# ------------------------------------------------------------ keys and values

_key_values = {"S": st.text(min_size=1, max_size=8).map(lambda s: {"S": s}),
               "N": _numbers.map(lambda n: {"N": n}),
               "B": st.binary(min_size=1, max_size=8).map(lambda b: {"B": base64.b64encode(b).decode()})}


@st.composite
def keyed(draw: st.DrawFn) -> tuple[KeySchema, dict[str, Any]]:
    hash_type = draw(st.sampled_from("SNB"))
    range_type = draw(st.sampled_from(["S", "N", "B", None]))
    schema = KeySchema("h", hash_type, "r" if range_type else None, range_type)
    key = {"h": draw(_key_values[hash_type])}
    if range_type:
        key["r"] = draw(_key_values[range_type])
    return schema, key


def client_schema(schema: KeySchema) -> list[dict[str, str]]:
    return [{"AttributeName": n, "AttributeType": t} for n, t in key_pairs(schema)]


@given(keyed())
def test_key_round_trip_and_client(pair: tuple[KeySchema, dict[str, Any]]) -> None:
    schema, key = pair
    assert decode_key(encode_key(key, schema), schema) == key
    as_written = {k: ({"N": str(Decimal(v["N"]).normalize())} if "N" in v else to_boto(v)) for k, v in key.items()}
    client_bytes = AttributeValueEncoder.encode_key(as_written, client_schema(schema))
    assert decode_key(client_bytes, schema) == key


@given(keyed(), st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda n: n not in "hr"),
                                attribute_values, max_size=5))
def test_item_values_round_trip(pair: tuple[KeySchema, dict[str, Any]], rest: dict[str, Any]) -> None:
    schema, key = pair
    lists = AttributeListTable()
    item = {**rest, **key}
    assert decode_values(encode_values(item, schema, lists), lists) == rest
    names = AttributeValueEncoder._get_canonical_attribute_list(item_boto_items(item), client_schema(schema))
    client_bytes = AttributeValueEncoder.encode_values(item_boto_items(item), client_schema(schema), names,
                                                       lists.id_for(names))
    assert normalize_sets(decode_values(client_bytes, lists)) == normalize_sets(rest)


def item_boto_items(item: dict[str, Any]) -> dict[str, Any]:
    return {k: to_boto(v) for k, v in item.items()}


@given(st.lists(st.lists(st.text(max_size=3), max_size=3, unique=True).map(tuple), max_size=40),
       st.integers(1, 10))
def test_attribute_list_table(lists_seq: list[tuple[str, ...]], bound: int) -> None:
    table = AttributeListTable(max_entries=bound)
    issued: dict[int, tuple[str, ...]] = {}
    for names in lists_seq:
        list_id = table.id_for(names)
        assert issued.setdefault(list_id, names) == names  # an id never changes meaning
        assert table.names_for(list_id) == names
        assert len(table) <= bound


# ------------------------------------------------------------ expressions

_names = st.sampled_from(["a", "b", "c", "d"])
_paths = st.one_of(_names, st.tuples(_names, _names).map(".".join),
                   st.tuples(_names, st.integers(0, 3)).map(lambda p: f"{p[0]}[{p[1]}]"))
_vals = st.sampled_from([":x", ":y", ":z"])
_operands = st.one_of(_paths, _vals, _paths.map(lambda p: f"size({p})"))


def _conditions() -> st.SearchStrategy[str]:
    atoms = st.one_of(
        st.tuples(_operands, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), _operands).map(" ".join),
        st.tuples(_operands, _operands, _operands).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
        st.tuples(_operands, st.lists(_operands, min_size=1, max_size=3)).map(
            lambda t: f"{t[0]} IN ({', '.join(t[1])})"),
        _paths.map(lambda p: f"attribute_exists({p})"), _paths.map(lambda p: f"attribute_not_exists({p})"),
        st.tuples(_paths, _vals).map(lambda t: f"attribute_type({t[0]}, {t[1]})"),
        st.tuples(_paths, _vals).map(lambda t: f"begins_with({t[0]}, {t[1]})"),
        st.tuples(_paths, _operands).map(lambda t: f"contains({t[0]}, {t[1]})"))
    return st.recursive(atoms, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        inner.map(lambda c: f"NOT ({c})")), max_leaves=6)


VALUES = {":x": {"N": "1"}, ":y": {"S": "s"}, ":z": {"L": [{"N": "2.5"}]}}


def resolve(blob: bytes | None) -> Any:
    """A compiled expression with value references replaced by the values."""
    assert blob is not None
    envelope = cbor2.loads(blob)
    values = envelope[2] if len(envelope) == 3 else []

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            if len(node) == 2 and node[0] == 17 and isinstance(node[1], int):
                return ("value", repr(from_cbor(values[node[1]])))
            return [walk(n) for n in node]
        return node
    return walk(envelope[1])


def used(names: dict[str, str], values: dict[str, Any], text: str) -> tuple[dict[str, str], dict[str, Any]]:
    return ({k: v for k, v in names.items() if k in text}, {k: v for k, v in values.items() if k in text})


@settings(max_examples=150)
@given(_conditions())
def test_condition_expressions_reparse_identically(text: str) -> None:
    names, values = used({}, VALUES, text)
    original = CborSExprGenerator.encode_condition_expression(text, names, values)
    renderer = Renderer()
    rendered = renderer.condition(original)
    again = CborSExprGenerator.encode_condition_expression(
        rendered, renderer.names, {k: item_json({"v": to_boto(v)})["v"] for k, v in renderer.values.items()})
    assert resolve(again) == resolve(original)


_set_actions = st.one_of(
    st.tuples(_paths, _vals).map(lambda t: f"{t[0]} = {t[1]}"),
    st.tuples(_paths, _paths, _vals, st.sampled_from("+-")).map(lambda t: f"{t[0]} = {t[1]} {t[3]} {t[2]}"),
    st.tuples(_paths, _paths, _vals).map(lambda t: f"{t[0]} = if_not_exists({t[1]}, {t[2]})"),
    st.tuples(_paths, _operands.filter(lambda o: not o.startswith("size")), _vals).map(
        lambda t: f"{t[0]} = list_append({t[1]}, {t[2]})"))


@settings(max_examples=100)
@given(st.lists(_set_actions, min_size=1, max_size=2), st.lists(_paths, max_size=2),
       st.lists(st.tuples(_paths, _vals), max_size=1), st.lists(st.tuples(_paths, _vals), max_size=1))
def test_update_expressions_reparse(sets: list[str], removes: list[str], adds: list[tuple[str, str]],
                                    deletes: list[tuple[str, str]]) -> None:
    targets = [s.split(" = ")[0] for s in sets] + removes + [a[0] for a in adds + deletes]
    if len(set(targets)) != len(targets) or any(
            x != y and (x.startswith(y + ".") or x.startswith(y + "[")) for x in targets for y in targets):
        return  # DynamoDB rejects overlapping paths; the client compiler does too
    parts = ["SET " + ", ".join(sets)]
    parts += ["REMOVE " + ", ".join(removes)] if removes else []
    parts += ["ADD " + ", ".join(f"{p} {v}" for p, v in adds)] if adds else []
    parts += ["DELETE " + ", ".join(f"{p} {v}" for p, v in deletes)] if deletes else []
    text = " ".join(parts)
    names, values = used({}, VALUES, text)
    original = CborSExprGenerator.encode_update_expression(text, names, values)
    renderer = Renderer()
    rendered = renderer.update(original)
    again = CborSExprGenerator.encode_update_expression(
        rendered, renderer.names, {k: item_json({"v": to_boto(v)})["v"] for k, v in renderer.values.items()})
    assert resolve(again) == resolve(original)


@given(st.lists(_paths, min_size=1, max_size=4, unique=True))
def test_projection_expressions_reparse(paths: list[str]) -> None:
    text = ", ".join(paths)
    original = CborSExprGenerator.encode_projection_expression(text, {}, {})
    renderer = Renderer()
    rendered, parsed = renderer.projection(original)
    assert len(parsed) == len(paths)
    assert resolve(CborSExprGenerator.encode_projection_expression(rendered, renderer.names, {})) == resolve(original)


def test_canonical_text_examples() -> None:
    assert [canonical_text(t) for t in ["1.50", "1e3", "-0", "007", "2.5E-3"]] == ["1.5", "1000", "0", "7", "0.0025"]
