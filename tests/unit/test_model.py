"""Number normalization, canonical keys, key-condition partitions, configuration."""

from __future__ import annotations

from decimal import Context
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daxd.config import ConfigError, load, parse_size
from daxd.model.errors import SerializationException, ValidationException, from_upstream
from daxd.model.expressions import legacy_partition_value, partition_value
from daxd.model.keys import KeySchema, TableSchema, canonical_key, key_of
from daxd.model.values import normalize_item, normalize_number

# Observed on DynamoDB Local 3.3 (PutItem then GetItem), pinned here.
DYNAMODB_SPELLINGS = {
    "1.50": "1.5", "1e3": "1000", "-0": "0", "007": "7", "2.5E-3": "0.0025", "0.000": "0",
    "-1.230e+2": "-123", "+5": "5", ".5": "0.5", "5.": "5", "100": "100", "1e30": "1" + "0" * 30,
    "1.5E-20": "0.000000000000000000015",
    "12345678901234567890123456789012345678": "12345678901234567890123456789012345678",
}


@pytest.mark.parametrize(("sent", "stored"), DYNAMODB_SPELLINGS.items())
def test_numbers_are_normalized_as_dynamodb_does(sent: str, stored: str) -> None:
    assert normalize_number(sent) == stored


@pytest.mark.parametrize("bad", ["", "  5", "abc", "1e", "NaN", "Infinity"])
def test_non_numbers_are_refused_with_dynamodbs_message(bad: str) -> None:
    with pytest.raises(ValidationException, match="cannot be converted into a number"):
        normalize_number(bad)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: abs(d.adjusted()) < 100 and len(d.normalize(Context(prec=100)).as_tuple().digits) <= 38))
def test_normalization_is_idempotent_and_keeps_the_value(value: object) -> None:
    from decimal import Decimal

    once = normalize_number(str(value))
    assert normalize_number(once) == once
    assert Decimal(once) == Decimal(str(value))


def test_nested_numbers_and_sets_are_normalized() -> None:
    item = {"m": {"M": {"n": {"N": "1.0"}}}, "l": {"L": [{"N": "2e0"}]}, "ns": {"NS": ["3.00"]}, "s": {"S": "1.0"}}
    assert normalize_item(item) == {"m": {"M": {"n": {"N": "1"}}}, "l": {"L": [{"N": "2"}]},
                                    "ns": {"NS": ["3"]}, "s": {"S": "1.0"}}


def test_canonical_key_ignores_attribute_order_and_number_spelling() -> None:
    a = canonical_key({"pk": {"S": "x"}, "sk": {"N": "1.0"}})
    b = canonical_key({"sk": {"N": "1"}, "pk": {"S": "x"}})
    assert a == b
    assert a != canonical_key({"pk": {"S": "x"}, "sk": {"N": "2"}})


@pytest.mark.parametrize("bad", [None, {}, {"pk": {"S": "x", "N": "1"}}, {"pk": {"Q": "x"}}, {"pk": {"N": "1e200"}}])
def test_invalid_keys_are_validation_errors(bad: object) -> None:
    with pytest.raises(ValidationException):
        canonical_key(bad)


@pytest.mark.parametrize("bad", [[], "x", {"pk": "x"}, {"pk": {"N": 3}}, {"pk": {"S": True}}, {"pk": {"B": "A"}}])
def test_keys_of_the_wrong_json_types_are_serialization_errors(bad: object) -> None:
    with pytest.raises(SerializationException):
        canonical_key(bad)


def test_null_and_unknown_members_are_absent_as_dynamodb_reads_them() -> None:
    assert canonical_key({"pk": {"S": "x", "N": None, "Q": 1}}) == canonical_key({"pk": {"S": "x"}})


def test_key_of_an_item_and_schema_from_description() -> None:
    schema = TableSchema.from_description({
        "TableName": "t",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                 {"AttributeName": "sk", "AttributeType": "N"},
                                 {"AttributeName": "g", "AttributeType": "S"}],
        "GlobalSecondaryIndexes": [{"IndexName": "by-g", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]}],
    })
    assert schema.key == KeySchema("pk", "S", "sk", "N")
    assert schema.indexes["by-g"] == KeySchema("g", "S")
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "v": {"S": "x"}}
    assert key_of(item, schema.key) == {"pk": {"S": "a"}, "sk": {"N": "1"}}
    with pytest.raises(ValidationException):
        key_of({"pk": {"S": "a"}}, schema.key)


@pytest.mark.parametrize("expression", [
    "pk = :p", "#p = :p", ":p = pk", "(pk = :p) AND sk > :s", "pk = :p AND sk BETWEEN :a AND :b",
    "begins_with(sk, :s) AND #p=:p", "( #p = :p )",
])
def test_partition_value_of_key_conditions(expression: str) -> None:
    value = partition_value(expression, {"#p": "pk"}, {":p": {"S": "x"}, ":s": {"N": "1"}}, "pk")
    assert value == {"S": "x"}


def test_unreadable_key_conditions_give_no_partition() -> None:
    assert partition_value("sk = :s", None, {":s": {"N": "1"}}, "pk") is None
    assert partition_value("pk = :p $$", None, {":p": {"S": "x"}}, "pk") is None
    assert legacy_partition_value({"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "x"}]}},
                                  "pk") == {"S": "x"}


def test_upstream_errors_keep_code_message_and_body() -> None:
    body = b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"nope","Item":{}}'
    error = from_upstream(400, body)
    assert error.code == "ConditionalCheckFailedException" and error.message == "nope"
    assert error.to_json() == body and error.status == 400
    odd = from_upstream(503, b"not json")
    assert odd.status == 503 and odd.retryable


def test_config_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    path = tmp_path / "daxd.toml"
    path.write_text('http_port = 1000\nadmin_port = 1001\ndax_port = 1002\ncache_size = "2GB"\n')
    env = {"DAXD_ADMIN_PORT": "2001", "DAXD_DAX_PORT": "2002"}
    settings = load({"dax_port": 3002, "http_port": None}, env, path)
    assert (settings.http_port, settings.admin_port, settings.dax_port) == (1000, 2001, 3002)
    assert settings.cache_size == 2 * 10**9


@pytest.mark.parametrize(("text", "size"), [("1024", 1024), ("1KiB", 1024), ("1KB", 1000), ("1.5MiB", 1572864),
                                             ("1GiB", 2**30), ("3GB", 3 * 10**9)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("flags", [{"http_port": 70000}, {"item_ttl": -1}, {"cache_size": "lots"},
                                   {"upstream": "ftp://x"}, {"control_plane": "maybe"}])
def test_bad_settings_name_the_setting(flags: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=next(iter(flags)).replace("_", "[-_]")):
        load(flags, {}, None)


def test_unknown_keys_in_a_config_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "daxd.toml"
    path.write_text("htp_port = 1\n")
    with pytest.raises(ConfigError, match="htp_port"):
        load({}, {}, path)


@pytest.mark.parametrize("bad", ["²", "١٢", "1²"])
def test_unicode_digits_are_not_numbers(bad: str) -> None:
    with pytest.raises(ValidationException):
        normalize_number(bad)
    with pytest.raises(ValidationException):
        canonical_key({"pk": {"N": bad}})
