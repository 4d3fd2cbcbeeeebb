"""Golden vectors: byte sequences captured from the official clients (docs/protocol.md).

Requests are decoded to the expected events/operations; replies are encoded to
the captured (verified) bytes. Whitespace in the hex strings is cosmetic.
"""

from __future__ import annotations

from typing import Any

import pytest

from daxd.frontends.dax import (
    NEED_DATA,
    AttributeListTable,
    AuthorizeConnection,
    DaxConnection,
    DefineAttributeList,
    DefineAttributeListId,
    DefineKeySchema,
    Endpoint,
    Endpoints,
    KeySchema,
    MethodCall,
    Operation,
    PlainGetItem,
    Preamble,
    RequestContext,
    decode_plain_get_item,
    encode_attribute_list,
    encode_attribute_list_id,
    encode_endpoints,
    encode_error,
    encode_key_schema,
    encode_response,
    to_operation,
)
from daxd.frontends.dax.keys import decode_key, encode_compound_key, encode_key
from daxd.frontends.dax.numbers import lex_decode, lex_encode
from daxd.frontends.dax.sexpr import Renderer
from daxd.model.errors import ConditionalCheckFailedException, TransactionCanceledException


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def t(text: str) -> str:
    """Hex of a CBOR text/byte string payload."""
    return text.encode().hex()


SIG = "6ae11fa6bd4c355467c7d26d57a32e9680a83c9b96cdee1d7bb98297d530f607"
TO_SIGN = ("AWS4-HMAC-SHA256\n20261126T140644Z\n20261126/us-east-1/dax/aws4_request\n"
           "3a5e09b4e4213e497e5a903b7ecc008154b9c8746780ad559c51998ec940a2aa")
UA = "DaxPythonClient-2.1.0"
PREAMBLE = h(f"674a37796e653547 00 50 204d9c23b599934f429424b6883411c9 a1 69 {t('UserAgent')} 75 {t(UA)} 00")
AUTH = h(f"01 1a58c2336b 6b {t('AKIDEXAMPLE')} 7840 {t(SIG)} 5886 {t(TO_SIGN)} f6 75 {t(UA)}")
SCHEMAS = {"tbl": KeySchema("id", "S"), "tbl2": KeySchema("pk", "S", "sk", "N")}


def events(data: bytes) -> list[Any]:
    conn = DaxConnection()
    conn.receive_data(data)
    out = []
    while (event := conn.next_event()) is not NEED_DATA:
        out.append(event)
    return out


def lists_with(*named: tuple[int, tuple[str, ...]]) -> AttributeListTable:
    """A registry in which each given list has the given id (fillers before it)."""
    table = AttributeListTable()
    for list_id, names in sorted(named):
        while table.id_for((f"filler{len(table)}",)) < list_id - 1:
            pass
        assert table.id_for(names) == list_id
    return table


def call(hex_request: str) -> MethodCall:
    (event,) = events(PREAMBLE + h(hex_request))[1:]
    if isinstance(event, PlainGetItem):
        event = decode_plain_get_item(event)
    assert isinstance(event, MethodCall)
    return event


# ------------------------------------------------------------ connection setup

def test_preamble_auth_endpoints_one_segment() -> None:
    got = events(PREAMBLE + AUTH + h("01 1a1b2bcf02"))
    assert got == [
        Preamble(h("204d9c23b599934f429424b6883411c9"), UA, {"UserAgent": UA}),
        AuthorizeConnection("AKIDEXAMPLE", SIG, TO_SIGN.encode(), None, UA),
        Endpoints(),
    ]


def test_js_preamble_and_session_token() -> None:
    js = h(f"674a37796e653547 00 50 {'11' * 16} a1 69 {t('UserAgent')} 73 {t('DaxJSV3Client-3.1.0')} 00")
    auth = h(f"01 1a58c2336b 6b {t('AKIDEXAMPLE')} 7840 {t(SIG)} 5886 {t(TO_SIGN)} 68 {t('TOKEN123')} f6")
    preamble, authorize = events(js + auth)
    assert isinstance(preamble, Preamble) and preamble.user_agent == "DaxJSV3Client-3.1.0"
    assert isinstance(authorize, AuthorizeConnection) and authorize.session_token == "TOKEN123"


def test_go_text_session_id() -> None:
    go = h(f"674a37796e653547 00 61 30 a1 69 {t('UserAgent')} 73 {t('DaxGoV2Client-1.0.3')} 00")
    assert events(go)[0] == Preamble("0", "DaxGoV2Client-1.0.3", {"UserAgent": "DaxGoV2Client-1.0.3"})


def test_endpoints_reply() -> None:
    assert encode_endpoints([Endpoint(1, "localhost", "127.0.0.1", 18111, 1, "us-east-1a", 1)]) == h(
        f"80 81 a7 00 01 01 69 {t('localhost')} 02 44 7f000001 03 19 46bf 04 01 05 6a {t('us-east-1a')} 06 01")


@pytest.mark.parametrize(("request_hex", "event", "schema", "reply"), [
    ("01 3a2c43e27e 43 74626c", DefineKeySchema("tbl"), KeySchema("id", "S"), "80 a1 62 6964 61 53"),
    ("01 3a2c43e27e 44 74626c32", DefineKeySchema("tbl2"), KeySchema("pk", "S", "sk", "N"),
     "80 a2 62 706b 61 53 62 736b 61 4e"),
])
def test_define_key_schema(request_hex: str, event: Any, schema: KeySchema, reply: str) -> None:
    assert events(PREAMBLE + h(request_hex))[1] == event
    assert encode_key_schema(schema) == h(reply)


def test_define_attribute_list_and_id() -> None:
    got = events(PREAMBLE + h("01 1a27f9bd71 0a  01 3a495927bb 82 63 616765 64 6e616d65"))
    assert got[1:] == [DefineAttributeList(10), DefineAttributeListId(("age", "name"))]
    assert encode_attribute_list(["age", "name"]) == h("80 82 63 616765 64 6e616d65")
    assert encode_attribute_list_id(10) == h("80 0a")


# ------------------------------------------------------------ data requests

def test_get_item_request_and_replies() -> None:
    op = to_operation(call("01 1a0fb0cc6a 43 74626c 42 6b31 bf 03 00 ff"), SCHEMAS, AttributeListTable())
    assert (op.name, op.request) == ("GetItem", {"TableName": "tbl", "Key": {"id": {"S": "k1"}}})
    lists = lists_with((10, ("age", "name")))
    assert encode_response(op, {}, lists) == h("80 a0")
    item = {"id": {"S": "k1"}, "age": {"N": "30"}, "name": {"S": "alice"}}
    assert encode_response(op, {"Item": item}, lists) == h("80 a1 00 49 0a 18 1e 65 616c696365")


def test_get_item_projection_reply() -> None:
    projection = "0b 82 01 82 82 12 61 61 82 12 61 63"
    op = to_operation(call(f"01 1a0fb0cc6a 43 74626c 42 6b31 bf 00 4{projection[1:]} ff"),
                      SCHEMAS, AttributeListTable())
    assert op.request["ProjectionExpression"] == "#n0, #n1"
    item = {"a": {"N": "5"}, "c": {"M": {"z": {"L": [{"N": "7"}]}}}}
    assert encode_response(op, {"Item": item}, AttributeListTable()) == h("80 a1 00 a2 00 05 01 a1 617a 81 07")


def test_put_item_requests() -> None:
    lists = lists_with((10, ("age", "name")))
    op = to_operation(call("01 3a7d8e7e56 43 74626c 42 6b31 49 0a181e65616c696365 bf 03 00 ff"), SCHEMAS, lists)
    assert op.request == {"TableName": "tbl", "Item": {
        "id": {"S": "k1"}, "age": {"N": "30"}, "name": {"S": "alice"}}}
    assert encode_response(op, {}, lists) == h("80 a0")
    raw = t("attribute_not_exists(id)")
    conditional = to_operation(call(
        f"01 3a7d8e7e56 43 74626c 42 6b31 41 01 bf 03 00 04 58 18 {raw} 04 4a 83 01 82 0c 82 12 62 6964 80 ff"),
        SCHEMAS, lists)
    assert conditional.request["ConditionExpression"] == "attribute_not_exists(#n0)"
    assert conditional.request["ExpressionAttributeNames"] == {"#n0": "id"}


def test_put_item_all_old_reply() -> None:
    lists = lists_with((10, ("age", "name")))
    op = to_operation(call("01 3a7d8e7e56 43 74626c 42 6b31 41 01 bf 07 02 03 01 ff"), SCHEMAS, lists)
    assert (op.request["ReturnValues"], op.request["ReturnConsumedCapacity"]) == ("ALL_OLD", "TOTAL")
    old = {"id": {"S": "k1"}, "age": {"N": "30"}, "name": {"S": "alice"}}
    reply = encode_response(op, {"Attributes": old, "ConsumedCapacity": {"TableName": "tbl", "CapacityUnits": 1.0}},
                            lists)
    assert reply == h("80 a2 02 49 0a181e65616c696365 01 48 63 74626c 01 f6 f6 f6")


def test_query_reply() -> None:
    lists = lists_with((13, ("v",)))
    op = to_operation(call("01 3a3781c2ae 44 74626c32 f6 bf 0d 02 ff"), SCHEMAS, lists)
    assert op.request == {"TableName": "tbl2", "Limit": 2}
    result = {"Items": [{"pk": {"S": "p"}, "sk": {"N": "0.5"}, "v": {"S": "v0"}},
                        {"pk": {"S": "p"}, "sk": {"N": "10.5"}, "v": {"S": "v1"}}],
              "Count": 2, "ScannedCount": 2, "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"N": "10.5"}}}
    assert encode_response(op, result, lists) == h(
        "80 a4 07 82 82 46 6170c0800000 44 0d627630 82 46 6170c21d4020 44 0d627631"
        " 08 02 0a 02 09 46 6170c21d4020")


def test_indexed_scan_last_key_is_indefinite_map() -> None:
    op = to_operation(call("01 3a6fc8309b 44 74626c32 bf 0b 43 677369 ff"), SCHEMAS, AttributeListTable())
    assert op.request == {"TableName": "tbl2", "IndexName": "gsi"}
    reply = encode_response(op, {"Items": [], "Count": 0, "ScannedCount": 0,
                                 "LastEvaluatedKey": {"pk": {"S": "p"}, "sk": {"N": "0.5"}}}, AttributeListTable())
    assert reply.endswith(h("09 4e bf 62 706b 61 70 62 736b c4 82 20 05 ff"))
    assert encode_compound_key({"pk": {"S": "p"}, "sk": {"N": "0.5"}}) == h(
        "bf 62 706b 61 70 62 736b c4 82 20 05 ff")


def test_batch_get_item() -> None:
    lists = lists_with((13, ("v",)))
    op = to_operation(call(
        "01 3a29985cdb a2 64 74626c32 83 f4 f6 82 46 6170c0800000 46 6170c2fa8010"
        " 63 74626c 83 f5 47 8201818212 6178 81 42 6b31 f6"), SCHEMAS, lists)
    assert op.request == {"RequestItems": {
        "tbl2": {"Keys": [{"pk": {"S": "p"}, "sk": {"N": "0.5"}}, {"pk": {"S": "p"}, "sk": {"N": "99"}}]},
        "tbl": {"Keys": [{"id": {"S": "k1"}}], "ConsistentRead": True, "ProjectionExpression": "#n0",
                "ExpressionAttributeNames": {"#n0": "x"}}}}
    result = {"Responses": {"tbl2": [{"pk": {"S": "p"}, "sk": {"N": "0.5"}, "v": {"S": "v0"}}],
                            "tbl": [{"x": {"S": "y"}}]},
              "UnprocessedKeys": {},
              "ConsumedCapacity": [{"TableName": "tbl2", "CapacityUnits": 1.0},
                                   {"TableName": "tbl", "CapacityUnits": 1.0}]}
    assert encode_response(op, result, lists) == h(
        "80 82 a2 64 74626c32 82 46 6170c0800000 44 0d627630  63 74626c 81 a1 00 61 79  a0"
        "  82 49 64 74626c32 01 f6f6f6 48 63 74626c 01 f6f6f6")


def test_batch_write_item() -> None:
    lists = lists_with((14, ("q",)))
    op = to_operation(call("01 1a06ed585f a1 63 74626c 84 42 6b39 42 0ef4 42 6b38 f6 f6"), SCHEMAS, lists)
    assert op.request == {"RequestItems": {"tbl": [
        {"PutRequest": {"Item": {"id": {"S": "k9"}, "q": {"BOOL": False}}}},
        {"DeleteRequest": {"Key": {"id": {"S": "k8"}}}}]}}
    assert encode_response(op, {}, lists) == h("80 a0 80 a0")


def test_transact_get_items() -> None:
    lists = lists_with((14, ("q",)))
    op = to_operation(call(
        "01 1a6f3d49db 83 43 74626c 43 74626c 43 74626c 83 42 6b39 44 6e6f7065 42 6b31"
        " 83 f6 f6 47 82018182126178 bf 03 01 ff"), SCHEMAS, lists)
    assert [a["Get"]["Key"]["id"]["S"] for a in op.request["TransactItems"]] == ["k9", "nope", "k1"]
    assert op.request["ReturnConsumedCapacity"] == "TOTAL"
    result = {"Responses": [{"Item": {"id": {"S": "k9"}, "q": {"BOOL": False}}}, {}, {"Item": {"x": {"S": "y"}}}],
              "ConsumedCapacity": [{"TableName": "tbl", "CapacityUnits": 2.0}]}
    assert encode_response(op, result, lists) == h("80 82 83 42 0ef4 f6 a1 00 61 79 81 a2 04 63 74626c 01 02")


def test_transact_write_items() -> None:
    lists = lists_with((15, ("w",)))
    op = to_operation(call(
        "01 3a4524c569 84 02 09 07 0c 84 43 74626c 43 74626c 43 74626c 43 74626c"
        " 84 43 6b3130 42 6b39 42 6b38 42 6b31 84 42 0f01 f6 f6 f6 f6 84 01 01 01 01"
        " 84 4a 8301820c8212626964 80 f6 f6 4a 8301820b8212626964 80"
        " 84 f6 4e 830181831382126177821100 8102 f6 f6 bf 03 00 13 65 746f6b2d31 ff"), SCHEMAS, lists)
    put, update, delete, check = op.request["TransactItems"]
    assert put == {"Put": {"TableName": "tbl", "Item": {"id": {"S": "k10"}, "w": {"N": "1"}},
                           "ConditionExpression": "attribute_not_exists(#n0)",
                           "ExpressionAttributeNames": {"#n0": "id"}}}
    assert update == {"Update": {"TableName": "tbl", "Key": {"id": {"S": "k9"}}, "UpdateExpression": "SET #n0 = :v0",
                                 "ExpressionAttributeNames": {"#n0": "w"},
                                 "ExpressionAttributeValues": {":v0": {"N": "2"}}}}
    assert delete == {"Delete": {"TableName": "tbl", "Key": {"id": {"S": "k8"}}}}
    assert check["ConditionCheck"]["ConditionExpression"] == "attribute_exists(#n0)"
    assert op.request["ClientRequestToken"] == "tok-1"
    assert encode_response(op, {}, lists) == h("80 83 80 80 a0")


# ------------------------------------------------------------ errors

def test_conditional_check_failed_error() -> None:
    reply = encode_error(ConditionalCheckFailedException("The conditional request failed"))
    assert reply == h(f"85 04 18 25 18 26 18 27 18 2b 78 1e {t('The conditional request failed')}"
                      f" 83 f6 78 1f {t('ConditionalCheckFailedException')} 19 01 90")


def test_transaction_canceled_error() -> None:
    message = "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed]"
    body = ('{"__type":"x#TransactionCanceledException","message":"m","CancellationReasons":'
            '[{"Code":"ConditionalCheckFailed","Message":"The conditional request failed"},{"Code":"None"}]}')
    op = Operation("TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "tbl"}},
                                                             {"Delete": {"TableName": "tbl"}}]},
                   RequestContext(SCHEMAS))
    reply = encode_error(TransactionCanceledException(message, raw=body.encode()), operation=op)
    assert reply == h(f"85 04 18 25 18 26 18 27 18 3a 78 66 {t(message)}"
                      f" 84 f6 78 1c {t('TransactionCanceledException')} 19 01 90"
                      f" 86 76 {t('ConditionalCheckFailed')} 78 1e {t('The conditional request failed')} f6"
                      f" 64 {t('None')} f6 f6")


# ------------------------------------------------------------ keys, numbers, expressions

@pytest.mark.parametrize(("text", "encoded"), [
    ("1", "c1 1c 00 00"), ("-1", "3e e3 ff f0"), ("0.05", "bf 80 00 00"), ("-7.25", "3e 47 bf d0"),
    ("1.5", "c1 28 80 10"), ("123456789", "c9 21 dd 4c 84 02"), ("20", "c2 35 00 10"), ("100", "c3 1c 00 20"),
    ("10.5", "c2 1d 40 20"), ("0", "80"),
])
def test_lex_decimal(text: str, encoded: str) -> None:
    assert lex_encode(text) == h(encoded)
    assert lex_decode(h(encoded)) == text


@pytest.mark.parametrize(("encoded", "text"), [
    ("fe 80 00 00 65 1c 00 00", "1" + "0" * 100), ("c3 1c 00 00", "100"), ("c2 35 00 00", "20"), ("7f", "0"),
])
def test_lex_decimal_client_forms(encoded: str, text: str) -> None:
    assert lex_decode(h(encoded)) == text


@pytest.mark.parametrize(("key_bytes", "schema", "key"), [
    ("6b31", KeySchema("id", "S"), {"id": {"S": "k1"}}),
    ("c4 82 20 0f", KeySchema("n", "N"), {"n": {"N": "1.5"}}),
    ("c4 82 21 18 96", KeySchema("n", "N"), {"n": {"N": "1.5"}}),
    ("61 70 c2 1d 40 20", KeySchema("pk", "S", "sk", "N"), {"pk": {"S": "p"}, "sk": {"N": "10.5"}}),
])
def test_key_bytes(key_bytes: str, schema: KeySchema, key: dict[str, Any]) -> None:
    assert decode_key(h(key_bytes), schema) == key
    assert decode_key(encode_key(key, schema), schema) == key


@pytest.mark.parametrize(("method", "blob", "text", "names", "values"), [
    ("condition", "83 01 82 0c 82 12 62 69 64 80", "attribute_not_exists(#n0)", {"#n0": "id"}, {}),
    ("condition", "83 01 83 06 83 00 82 12 62 70 6b 82 11 00 83 04 82 12 62 73 6b 82 11 01 82 61 70 20",
     "#n0 = :v0 AND #n1 > :v1", {"#n0": "pk", "#n1": "sk"}, {":v0": {"S": "p"}, ":v1": {"N": "-1"}}),
    ("update", "83 01 81 83 13 82 12 61 61 82 11 00 81 c4 82 21 38 18", "SET #n0 = :v0", {"#n0": "a"},
     {":v0": {"N": "-0.25"}}),
    ("condition", "83 01 83 00 82 12 61 61 82 11 00 81 c4 82 21 38 18", "#n0 = :v0", {"#n0": "a"},
     {":v0": {"N": "-0.25"}}),
    ("update", "83 01 81 83 13 82 12 63 616765 83 18 19 82 12 63 616765 82 11 00 81 01",
     "SET #n0 = #n0 + :v0", {"#n0": "age"}, {":v0": {"N": "1"}}),
    ("condition", "83 01 83 01 84 12 61 63 61 7a d9 0c fc 00 82 11 00 81 01",
     "#n0.#n1[0] <> :v0", {"#n0": "c", "#n1": "z"}, {":v0": {"N": "1"}}),
])
def test_expressions(method: str, blob: str, text: str, names: dict[str, str], values: dict[str, Any]) -> None:
    renderer = Renderer()
    assert getattr(renderer, method)(h(blob)) == text
    assert (renderer.names, renderer.values) == (names, values)


def test_projection_expression() -> None:
    renderer = Renderer()
    assert renderer.projection(h("82 01 82 82 12 61 61 82 12 61 63")) == ("#n0, #n1", [("a",), ("c",)])


def test_prepared_hit_matches_full_encoder() -> None:
    from daxd.frontends.dax.hot import encode_get_item_hit, prepare_item

    lists = lists_with((10, ("age", "name")))
    op = to_operation(call("01 1a0fb0cc6a 43 74626c 42 6b31 bf 03 00 ff"), SCHEMAS, lists)
    item = {"id": {"S": "k1"}, "age": {"N": "30"}, "name": {"S": "alice"}}
    prepared = prepare_item(item, SCHEMAS["tbl"], lists)
    assert encode_get_item_hit(op, prepared, lists) == h("80 a1 00 49 0a 18 1e 65 616c696365")
    assert encode_get_item_hit(op, None, lists) == h("80 a0")
    for n in range(40):  # ids above 23 take two bytes
        lists.id_for((f"x{n}",))
    big = {"id": {"S": "k1"}, "zz": {"S": "v" * 30}}
    assert encode_get_item_hit(op, prepare_item(big, SCHEMAS["tbl"], lists), lists) == encode_response(
        op, {"Item": big}, lists)
