"""Per-key permissions: attribution of requests to tables, the decision, and the key-file parser (fuzzed)."""

from __future__ import annotations

import json
import string
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daxd.auth import KeyRing, load_key_file
from daxd.config import ConfigError
from daxd.model.errors import AccessDeniedException
from daxd.observability import Metrics
from daxd.permissions import (
    OPERATIONS,
    READ,
    SCHEMA,
    WRITE,
    Access,
    Permissions,
    Unattributable,
    accesses,
    parse,
    statement_access,
)

FILE = """\
[keys]
READER = "s1"
WRITER = "s2"
ADMIN = "s3"
OPS = "s4"
ROOT = "s5"

[permissions.READER]
tables = ["Music", "Catalog*"]
operations = ["read"]

[permissions.WRITER]
tables = ["Music"]
operations = ["read", "write"]

[permissions.ADMIN]
tables = ["*"]
operations = ["control", "GetItem"]

[permissions.OPS]
tables = ["Music"]
operations = ["DescribeTable", "ExecuteStatement"]
"""


@pytest.fixture(scope="module")
def perms() -> Permissions:
    data = tomllib.loads(FILE)
    return parse(data, data["keys"], text=FILE)


def allowed(perms: Permissions, key: str, operation: str, request: dict[str, Any]) -> bool:
    try:
        perms.check(key, operation, request)
    except AccessDeniedException:
        return False
    return True


@pytest.mark.parametrize(("key", "operation", "request_", "expected"), [
    ("READER", "GetItem", {"TableName": "Music"}, True),
    ("READER", "GetItem", {"TableName": "Catalog-2024"}, True),
    ("READER", "GetItem", {"TableName": "Cat"}, False),
    ("READER", "GetItem", {"TableName": "Balances"}, False),
    ("READER", "GetItem", {"TableName": "arn:aws:dynamodb:us-east-1:1:table/Music"}, True),
    ("READER", "PutItem", {"TableName": "Music"}, False),
    ("READER", "Query", {"TableName": "Music", "IndexName": "by-g"}, True),
    ("READER", "Scan", {"TableName": "Balances", "IndexName": "Music"}, False),
    ("READER", "BatchGetItem", {"RequestItems": {"Music": {}, "CatalogX": {}}}, True),
    ("READER", "BatchGetItem", {"RequestItems": {"Music": {}, "Balances": {}}}, False),
    ("READER", "TransactGetItems", {"TransactItems": [{"Get": {"TableName": "Music"}}]}, True),
    ("READER", "TransactGetItems", {"TransactItems": [{"Get": {"TableName": "Music"}},
                                                      {"Get": {"TableName": "Balances"}}]}, False),
    ("READER", "DescribeTable", {"TableName": "Music"}, False),
    ("READER", "ListTables", {}, False),
    ("WRITER", "BatchWriteItem", {"RequestItems": {"Music": []}}, True),
    ("WRITER", "BatchWriteItem", {"RequestItems": {"Music": [], "Other": []}}, False),
    ("WRITER", "TransactWriteItems", {"TransactItems": [{"Put": {"TableName": "Music"}},
                                                        {"ConditionCheck": {"TableName": "Other"}}]}, False),
    ("WRITER", "ExecuteStatement", {"Statement": 'SELECT * FROM "Music"'}, True),
    ("WRITER", "ExecuteStatement", {"Statement": 'UPDATE "Music" SET a=1 WHERE pk=\'x\''}, True),
    ("READER", "ExecuteStatement", {"Statement": 'UPDATE "Music" SET a=1 WHERE pk=\'x\''}, False),
    ("READER", "ExecuteStatement", {"Statement": 'SELECT * FROM "Music"."by-g" WHERE g=\'x\''}, True),
    ("READER", "BatchExecuteStatement", {"Statements": [{"Statement": 'SELECT * FROM "Music"'},
                                                        {"Statement": 'SELECT * FROM "Balances"'}]}, False),
    ("READER", "ExecuteTransaction", {"TransactStatements": [{"Statement": 'EXISTS(SELECT * FROM "Music")'}]}, True),
    ("READER", "ExecuteStatement", {"Statement": 'SELECT * FROM "Music" -- comment'}, False),
    ("READER", "ExecuteStatement", {"Statement": 42}, False),
    ("ADMIN", "ListTables", {}, True),
    ("ADMIN", "CreateTable", {"TableName": "Anything"}, True),
    ("ADMIN", "GetItem", {"TableName": "Anything"}, True),
    ("ADMIN", "PutItem", {"TableName": "Anything"}, False),
    ("ADMIN", "TagResource", {"ResourceArn": "arn:aws:kinesis:us-east-1:1:stream/x"}, False),
    ("OPS", "DescribeTable", {"TableName": "Music"}, True),
    ("OPS", "UpdateTable", {"TableName": "Music"}, False),
    ("OPS", "ListTables", {}, False),
    ("OPS", "ExecuteStatement", {"Statement": 'DELETE FROM "Music" WHERE pk=\'x\''}, True),
    ("OPS", "RestoreTableFromBackup", {"TargetTableName": "Music",
                                       "BackupArn": "arn:aws:dynamodb:us-east-1:1:table/Other/backup/1"}, False),
    ("ROOT", "DeleteTable", {"TableName": "Anything"}, True),
    ("ROOT", "ExecuteStatement", {"Statement": "garbage"}, True),
    ("GONE", "GetItem", {"TableName": "Music"}, False),
])
def test_decisions(perms: Permissions, key: str, operation: str, request_: dict[str, Any], expected: bool) -> None:
    assert allowed(perms, key, operation, request_) is expected


def test_refusal_names_key_operation_and_table(perms: Permissions) -> None:
    with pytest.raises(AccessDeniedException) as refused:
        perms.check("READER", "BatchGetItem", {"RequestItems": {"Music": {}, "Balances": {}}})
    assert "READER" in refused.value.message and "dynamodb:BatchGetItem" in refused.value.message
    assert "table Balances" in refused.value.message
    assert refused.value.status == 400 and refused.value.code == "AccessDeniedException"
    lister = parse({"permissions": {"K": {"tables": ["T"], "operations": ["ListTables"]}}}, ["K"])
    with pytest.raises(AccessDeniedException, match="names no table"):
        lister.check("K", "ListTables", {})


def test_dax_checks_tables_named_before_decoding(perms: Permissions) -> None:
    perms.check_tables("READER", "BatchGetItem", ["Music", "Catalog1"])
    with pytest.raises(AccessDeniedException, match="Balances"):
        perms.check_tables("READER", "BatchGetItem", ["Music", "Balances"])
    perms.check_tables("READER", "DefineKeySchema", ["Music"], SCHEMA)  # any table the key may use
    with pytest.raises(AccessDeniedException):
        perms.check_tables("READER", "DefineKeySchema", ["Balances"], SCHEMA)
    assert perms.full_access("ROOT") and not perms.full_access("READER") and not perms.full_access("GONE")


@pytest.mark.parametrize(("statement", "expected"), [
    ('SELECT * FROM "Music" WHERE pk = ?', Access(READ, "Music")),
    ("select a from Music where pk = 'FROM x'", Access(READ, "Music")),
    ('SELECT * FROM "My""Table"', Access(READ, 'My"Table')),
    ('INSERT INTO "T" VALUE {\'pk\': \'a\'}', Access(WRITE, "T")),
    ('UPDATE "T" SET a = 1 WHERE pk = \'a\' RETURNING ALL NEW *', Access(WRITE, "T")),
    ("DELETE FROM T WHERE pk = 'a'", Access(WRITE, "T")),
    ('SELECT * FROM "T" ORDER BY sk DESC', Access(READ, "T")),
])
def test_partiql_attribution(statement: str, expected: Access) -> None:
    assert statement_access(statement) == expected


@pytest.mark.parametrize("statement", [
    "", "SELECT 1", 'SELECT * FROM "a", "b"', 'SELECT * FROM "a" /* c */', "SELECT * FROM (SELECT * FROM x)",
    "CREATE TABLE x", 'SELECT * FROM "unterminated', "SELECT * FROM a JOIN b", 'UPDATE "T" SET update = 1',
])
def test_partiql_refuses_what_it_cannot_attribute(statement: str) -> None:
    with pytest.raises(Unattributable):
        statement_access(statement)


def test_every_control_plane_arn_is_attributed() -> None:
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/Music/stream/2024"
    assert accesses("ListTagsOfResource", {"ResourceArn": arn}) == [Access("control", "Music")]
    assert accesses("ImportTable", {"TableCreationParameters": {"TableName": "New"}}) == [Access("control", "New")]
    with pytest.raises(Unattributable):
        accesses("DescribeExport", {"ExportArn": "not-an-arn"})
    assert accesses("ListTables", {}) == []


def test_every_operation_name_has_a_category() -> None:
    data = {"keys": {"K": "s"}, "permissions": {"K": {"tables": ["*"], "operations": sorted(OPERATIONS)}}}
    rule = parse(data, ["K"]).rules["K"]
    assert rule is not None and rule.operations == OPERATIONS


# -- the key-file parser ------------------------------------------------------

@pytest.mark.parametrize(("text", "fragment"), [
    ('[keys]\nA = "s"\n[permissions.B]\ntables = ["T"]\noperations = ["read"]\n', "line 3: [permissions.B]"),
    ('[keys]\nA = "s"\n[permissions.A]\ntables = ["T"]\n', "operations = [...] is missing"),
    ('[keys]\nA = "s"\n[permissions.A]\ntables = ["T"]\noperations = ["reed"]\n', "'reed' is not read"),
    ('[keys]\nA = "s"\n[permissions.A]\ntables = ["T*x"]\noperations = ["read"]\n', "'T*x' is not a table name"),
    ('[keys]\nA = "s"\n[permissions.A]\ntables = []\noperations = ["read"]\n', "non-empty list"),
    ('[keys]\nA = "s"\n[permissions.A]\ntables = ["T"]\noperations = ["read"]\nextra = 1\n', "unknown field"),
    ('permissions = 3\n[keys]\nA = "s"\n', "line 1: [permissions] must be a table"),
    ('[keys]\nA = "s"\n[permissions.A]\ntables = ["T"\n', "line"),
    ('[keys]\nA = ""\n', "line 2: the secret of 'A'"),
])
def test_bad_key_files_are_refused_with_the_line_or_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as bad:
        load_key_file(path)
    assert fragment in str(bad.value) and str(path) in str(bad.value)


def test_a_good_file_and_its_reload(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(FILE)
    metrics = Metrics()
    now = [0.0]
    ring = KeyRing(path, metrics, clock=lambda: now[0])
    assert ring.describe().startswith("5 access key(s)") and "4 with permission rules" in ring.describe()
    secrets = ring.secrets
    for _ in range(3):
        with pytest.raises(AccessDeniedException):
            ring.check("READER", "PutItem", {"TableName": "Music"})
    assert metrics.value("daxd_access_denied_total", key="READER") == 3
    path.write_text("[keys]\nREADER = 's1'\n[permissions.READER]\ntables = ['Other']\noperations = ['write']\n")
    assert ring.reload()[0]
    assert ring.secrets is secrets and set(secrets) == {"READER"}  # updated in place: authenticators see it
    ring.check("READER", "PutItem", {"TableName": "Other"})
    with pytest.raises(AccessDeniedException, match="not in the key file"):
        ring.check("WRITER", "GetItem", {"TableName": "Music"})
    path.write_text("[keys\n")
    reloaded, why = ring.reload()
    assert not reloaded and "line 1" in why
    ring.check("READER", "PutItem", {"TableName": "Other"})  # the old rules stay


def test_denials_are_logged_at_most_once_per_interval(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(FILE)
    now = [0.0]
    ring = KeyRing(path, Metrics(), clock=lambda: now[0])
    for step in range(5):
        now[0] = step
        with pytest.raises(AccessDeniedException):
            ring.check("READER", "DeleteItem", {"TableName": "Music"})
    now[0] = 11.0
    with pytest.raises(AccessDeniedException):
        ring.check("READER", "DeleteItem", {"TableName": "Music"})
    lines = [r.getMessage() for r in caplog.records if "access denied" in r.getMessage()]
    assert len(lines) == 2
    assert "key READER, operation DeleteItem, table Music" in lines[0] and "4 more" in lines[1]


# -- fuzzing ------------------------------------------------------------------

_names = st.text(string.ascii_letters + string.digits + "_-.*", min_size=0, max_size=8)
_scalars = st.one_of(st.integers(-5, 5), st.booleans(), _names, st.floats(allow_nan=False, allow_infinity=False))
_values = st.one_of(_scalars, st.lists(st.one_of(_scalars, st.sampled_from(["read", "write", "GetItem", "x"])),
                                       max_size=4))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


@st.composite
def key_files(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.text(string.ascii_uppercase, min_size=1, max_size=4), max_size=3, unique=True))
    lines = ["[keys]"] + [f'{k} = {_toml(draw(st.one_of(_names, _scalars)))}' for k in keys]
    for key in draw(st.lists(st.one_of(st.sampled_from(keys or ["Z"]), st.text(string.ascii_uppercase, min_size=1,
                                                                              max_size=4)), max_size=3, unique=True)):
        lines.append(f"[permissions.{key}]")
        for field in draw(st.lists(st.sampled_from(["tables", "operations", "other"]), max_size=3, unique=True)):
            lines.append(f"{field} = {_toml(draw(_values))}")
    if draw(st.booleans()):
        position = draw(st.integers(0, len(lines)))
        lines.insert(position, draw(st.sampled_from(["[", "x = ", '"', "[permissions", "= 1", "[[keys]]"])))
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=key_files())
def test_fuzzed_key_files_parse_or_are_refused_with_a_located_message(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    try:
        loaded = load_key_file(path)
    except ConfigError as exc:  # anything else (a traceback) fails the test
        message = str(exc)
        assert str(path) in message
        located = "line" in message or "[keys]" in message or any(
            f"'{k}'" in message or f"permissions.{k}" in message for k in _mentioned_keys(text))
        assert located, message
        return
    for key, rule in loaded.permissions.rules.items():
        assert key in loaded.secrets
        if rule is not None:
            assert rule.all_tables or rule.names or rule.prefixes


def _mentioned_keys(text: str) -> list[str]:
    return [token for token in text.replace("[", " ").replace("]", " ").replace(".", " ").replace("=", " ").split()
            if token.isalpha()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_arbitrary_text_never_escapes_as_a_traceback(tmp_path: Path, text: str) -> None:
    path = tmp_path / "fuzz.toml"
    path.write_text(text)
    try:
        load_key_file(path)
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message
        assert any(part in message for part in ("line", "[keys]", "secret of", "[permissions")), message


def test_remembered_decisions_are_per_key_and_table(perms: Permissions) -> None:
    for _ in range(2):
        perms.check("READER", "GetItem", {"TableName": "Music"})
        perms.check_tables("READER", "GetItem", ("Music",))
        with pytest.raises(AccessDeniedException):
            perms.check("READER", "GetItem", {"TableName": "Balances"})
        with pytest.raises(AccessDeniedException):
            perms.check("READER", "PutItem", {"TableName": "Music"})
        with pytest.raises(AccessDeniedException):
            perms.check_tables("READER", "DefineKeySchema", ("Balances",), SCHEMA)
    with pytest.raises(AccessDeniedException, match="cannot tell"):
        perms.check("READER", "GetItem", {"TableName": {"not": "a string"}})
    with pytest.raises(AccessDeniedException, match="cannot tell"):
        perms.check_tables("READER", "GetItem", ("arn:aws:s3:::bucket",))
