"""Per-key permissions: which tables an access key may use, and how. Pure: parse and decide, no I/O.

DAX calls DynamoDB with the cluster's own role, so on its own it lets anyone
who may connect read every cached item of every table. daxd closes that gap
with optional rules next to the keys (in the ``--auth-keys`` file, or the
``--config`` file holding ``[keys]``)::

    [permissions.AKIDREADER]
    tables = ["Music", "Catalog*"]   # names, prefixes ending in *, or "*" for every table
    operations = ["read"]            # read | write | control, or operation names (GetItem, ...)

A key without rules keeps full access. :func:`parse` turns the file's
document into :class:`Permissions`; :meth:`Permissions.check` decides one
request. A request is attributed to every table it names (each table of a
batch or transaction, the base table of an index Query/Scan, the table of a
PartiQL statement, the table in a control-plane call's name or ARN) and is
allowed only if the key may perform the operation on each of them. What
cannot be attributed (a PartiQL statement we cannot read, an ARN that names no
table) is refused; so is an operation that names no table (``ListTables``)
unless the key may use every table (``tables = ["*"]``).

The decision depends only on the key, the operation and the tables named,
never on the cache or on DynamoDB, so a refusal cannot reveal whether an item
exists or is cached.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from daxd.config import ConfigError
from daxd.model.errors import AccessDeniedException

READ = "read"
WRITE = "write"
CONTROL = "control"
#: The DAX protocol's key-schema request: allowed for any table the key may use at all.
SCHEMA = "schema"
CATEGORIES = (READ, WRITE, CONTROL)

READ_OPERATIONS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems", "SearchVectors"})
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems",
                              "StartBulkPutItems"})
PARTIQL_OPERATIONS = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})
CONTROL_OPERATIONS = frozenset({
    "CancelBulkOperation", "CreateBackup", "CreateGlobalTable", "CreateTable", "DeleteBackup",
    "DeleteResourcePolicy", "DeleteTable", "DescribeBackup", "DescribeBulkOperation", "DescribeContinuousBackups",
    "DescribeContributorInsights", "DescribeEndpoints", "DescribeExport", "DescribeGlobalTable",
    "DescribeGlobalTableSettings", "DescribeImport", "DescribeKinesisStreamingDestination", "DescribeLimits",
    "DescribeTable", "DescribeTableReplicaAutoScaling", "DescribeTimeToLive", "DisableKinesisStreamingDestination",
    "EnableKinesisStreamingDestination", "ExportTableToPointInTime", "GetResourcePolicy", "ImportTable",
    "ListBackups", "ListBulkOperations", "ListContributorInsights", "ListExports", "ListGlobalTables",
    "ListImports", "ListTables", "ListTagsOfResource", "PutResourcePolicy", "RestoreTableFromBackup",
    "RestoreTableToPointInTime", "TagResource", "UntagResource", "UpdateContinuousBackups",
    "UpdateContributorInsights", "UpdateGlobalTable", "UpdateGlobalTableSettings",
    "UpdateKinesisStreamingDestination", "UpdateTable", "UpdateTableReplicaAutoScaling", "UpdateTimeToLive",
})
#: Every DynamoDB operation a rule may name.
OPERATIONS = READ_OPERATIONS | WRITE_OPERATIONS | PARTIQL_OPERATIONS | CONTROL_OPERATIONS
#: Control-plane request fields that name a table (by name or ARN). Pagination cursors are not resources.
_TABLE_NAME_FIELDS = ("TableName", "TargetTableName", "SourceTableName", "GlobalTableName")
_TABLE_ARN_FIELDS = ("TableArn", "SourceTableArn", "ResourceArn", "BackupArn", "ExportArn", "ImportArn",
                     "GlobalTableSourceArn", "BulkOperationArn")
#: A table name pattern: DynamoDB's table-name alphabet, optionally ending in ``*``; or ``*`` alone.
_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,255}\*?$|^\*$")
_RULE_FIELDS = ("tables", "operations")
#: Allowed (key, operation, table) triples remembered per Permissions.
ALLOWED_MEMO_MAX = 10_000
_SINGLE_TABLE = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"})


class Unattributable(Exception):
    """A request whose tables cannot be told (a PartiQL statement we cannot read, an ARN naming no table)."""


@dataclass(frozen=True, slots=True)
class Access:
    """One thing a request does: a category (read, write, control) on a table (None: the account)."""

    category: str
    table: str | None


@dataclass(frozen=True, slots=True)
class Rule:
    """One key's permissions."""

    names: frozenset[str]
    prefixes: tuple[str, ...]
    all_tables: bool
    categories: frozenset[str]
    operations: frozenset[str]

    def table_allowed(self, table: str | None) -> bool:
        if self.all_tables:
            return True
        if table is None:
            return False
        return table in self.names or table.startswith(self.prefixes)

    def allows(self, operation: str, access: Access) -> bool:
        if access.category == SCHEMA:
            return self.table_allowed(access.table)
        permitted = operation in self.operations or access.category in self.categories
        return permitted and self.table_allowed(access.table)

    def describe(self) -> dict[str, list[str]]:
        """The rule as the admin endpoint shows it."""
        tables = ["*"] if self.all_tables else sorted(self.names) + sorted(p + "*" for p in self.prefixes)
        return {"tables": tables, "operations": sorted(self.categories) + sorted(self.operations)}


#: The rule of a key that is not (any longer) in the key file: nothing is allowed.
REVOKED = Rule(frozenset(), (), False, frozenset(), frozenset())


class Permissions:
    """Every key of a key file and its rule (None: full access)."""

    def __init__(self, rules: Mapping[str, Rule | None]) -> None:
        self.rules: dict[str, Rule | None] = dict(rules)
        #: (key, operation, table) found allowed: a repeated single-table request costs one set lookup.
        #: Table names come from clients: bounded, cleared when full. A reload makes a new Permissions.
        self._allowed: set[tuple[str, str, str]] = set()

    @property
    def restricted(self) -> list[str]:
        return [key for key, rule in self.rules.items() if rule is not None]

    def full_access(self, key: str | None) -> bool:
        return key is not None and key in self.rules and self.rules[key] is None

    def check(self, key: str | None, operation: str, request: Mapping[str, Any]) -> None:
        """Allow a DynamoDB JSON request, or raise.

        Raises:
            AccessDeniedException: the key may not do this (its message names operation and table).
        """
        rule = self.rules.get(key, REVOKED) if key is not None else REVOKED
        if rule is None:
            return
        table = request.get("TableName")
        single = isinstance(table, str) and operation in _SINGLE_TABLE
        if single and (key, operation, table) in self._allowed:
            return
        try:
            found = accesses(operation, request)
        except Unattributable as exc:
            raise denied(key, operation, None, f"daxd cannot tell which table it uses ({exc})") from None
        _decide(key, rule, operation, found)
        if single:
            self._remember(key, operation, str(table))

    def check_tables(self, key: str | None, operation: str, tables: Sequence[str],
                     category: str | None = None) -> None:
        """Allow an operation on tables already known (a DAX call names them before it is decoded), or raise.

        Raises:
            AccessDeniedException: as :meth:`check`.
        """
        rule = self.rules.get(key, REVOKED) if key is not None else REVOKED
        if rule is None:
            return
        single = tables[0] if len(tables) == 1 and category is None else None
        if single is not None and (key, operation, single) in self._allowed:
            return
        kind = category or category_of(operation)
        try:
            found = [Access(kind, table_name(t)) for t in tables]
        except Unattributable as exc:
            raise denied(key, operation, None, f"daxd cannot tell which table it uses ({exc})") from None
        _decide(key, rule, operation, found)
        if single is not None:
            self._remember(key, operation, single)

    def _remember(self, key: str | None, operation: str, table: str) -> None:
        if key is None:
            return
        if len(self._allowed) >= ALLOWED_MEMO_MAX:
            self._allowed.clear()
        self._allowed.add((key, operation, table))


def _decide(key: str | None, rule: Rule, operation: str, found: Sequence[Access]) -> None:
    if rule is REVOKED:
        raise denied(key, operation, found[0].table if found else None,
                     "the access key is not in the key file (any longer)")
    for access in found or [Access(category_of(operation), None)]:
        if not rule.allows(operation, access):
            reason = None
            if access.table is None and (operation in rule.operations or access.category in rule.categories):
                reason = 'it names no table, and only a key allowed every table (tables = ["*"]) may call it'
            raise denied(key, operation, access.table, reason)


def denied(key: str | None, operation: str, table: str | None, reason: str | None = None) -> AccessDeniedException:
    """DynamoDB's AccessDeniedException naming the key, the operation and the table."""
    resource = f"table {table}" if table is not None else "this account's tables"
    message = f"User: {key} is not authorized to perform: dynamodb:{operation} on resource: {resource}"
    if reason:
        message += f" because {reason}"
    error = AccessDeniedException(message)
    error.key, error.operation, error.table = key, operation, table  # type: ignore[attr-defined]
    return error


def category_of(operation: str) -> str:
    """read, write or control (PartiQL is decided per statement by :func:`accesses`)."""
    if operation in READ_OPERATIONS:
        return READ
    if operation in WRITE_OPERATIONS:
        return WRITE
    return CONTROL


def table_name(value: str) -> str:
    """A table name, or the name inside a table ARN (DynamoDB accepts either as ``TableName``)."""
    if value.startswith("arn:"):
        return _arn_table(value)
    return value


def _arn_table(arn: str) -> str:
    """``arn:aws:dynamodb:region:account:table/Name[/stream|backup|export|import/...]`` -> Name."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[2] == "dynamodb":
        kind, _, rest = parts[5].partition("/")
        name = rest.partition("/")[0]
        if kind in ("table", "global-table") and name:
            return name
    raise Unattributable(f"{arn!r} is not a DynamoDB table ARN")


def accesses(operation: str, request: Mapping[str, Any]) -> list[Access]:
    """What a DynamoDB JSON request does to which tables.

    Raises:
        Unattributable: a table cannot be told.
    """
    if operation in PARTIQL_OPERATIONS:
        return list(_partiql(request))
    category = category_of(operation)
    if operation in _SINGLE_TABLE:  # the hot path: only TableName says which table DynamoDB uses
        table = request.get("TableName")
        if not isinstance(table, str):
            raise Unattributable("TableName is not a string")
        return [Access(category, table_name(table))]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        items = request.get("RequestItems")
        return [Access(category, table_name(str(t))) for t in items] if isinstance(items, Mapping) else []
    if operation in ("TransactGetItems", "TransactWriteItems"):
        return [Access(category, table_name(t)) for t in _transact_tables(request.get("TransactItems"))]
    return [Access(category, t) for t in _named_tables(request)]


def _transact_tables(items: Any) -> Iterator[str]:
    for entry in items if isinstance(items, list) else ():
        for action in entry.values() if isinstance(entry, Mapping) else ():
            table = action.get("TableName") if isinstance(action, Mapping) else None
            if not isinstance(table, str):
                raise Unattributable("a transaction action without a TableName")
            yield table


def _named_tables(request: Mapping[str, Any]) -> list[str]:
    """The tables a single-table or control-plane request names ([] for an account-wide call)."""
    found: list[str] = []
    for field in _TABLE_NAME_FIELDS:
        value = request.get(field)
        if value is not None:
            if not isinstance(value, str):
                raise Unattributable(f"{field} is not a string")
            found.append(table_name(value))
    for field in _TABLE_ARN_FIELDS:
        value = request.get(field)
        if value is not None:
            if not isinstance(value, str):
                raise Unattributable(f"{field} is not a string")
            found.append(_arn_table(value))
    creation = request.get("TableCreationParameters")
    if creation is not None:
        table = creation.get("TableName") if isinstance(creation, Mapping) else None
        if not isinstance(table, str):
            raise Unattributable("TableCreationParameters has no TableName")
        found.append(table)
    return list(dict.fromkeys(found))


# -- PartiQL -----------------------------------------------------------------

_TOKEN = re.compile(r"""
    \s+
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<comment>--|/\*)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_READ_STATEMENTS = frozenset({"SELECT", "EXISTS"})
_WRITE_STATEMENTS = frozenset({"INSERT", "UPDATE", "DELETE"})
_TABLE_KEYWORDS = frozenset({"FROM", "INTO", "UPDATE"})
#: What may follow a statement's table reference.
_AFTER_TABLE = frozenset({None, "WHERE", "ORDER", "VALUE", "SET", "REMOVE", "RETURNING", ")"})


def _partiql(request: Mapping[str, Any]) -> Iterator[Access]:
    statements: list[Any]
    if "Statements" in request:
        statements = request["Statements"] if isinstance(request["Statements"], list) else [None]
    elif "TransactStatements" in request:
        statements = request["TransactStatements"] if isinstance(request["TransactStatements"], list) else [None]
    else:
        statements = [request]
    for statement in statements:
        text = statement.get("Statement") if isinstance(statement, Mapping) else None
        if not isinstance(text, str):
            raise Unattributable("a statement that is not a string")
        yield statement_access(text)


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, value) pairs: words as written, quoted identifiers unquoted; comments refused."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # an unterminated quote
            raise Unattributable("an unterminated quoted string or identifier")
        position = match.end()
        kind = match.lastgroup
        if kind is None:
            continue
        if kind == "comment":
            raise Unattributable("comments in a statement")
        value = match.group()
        tokens.append((kind, value[1:-1].replace('""', '"') if kind == "ident" else value))
    return tokens


def _keyword(token: tuple[str, str]) -> str | None:
    """An unquoted word, upper-cased (keywords are case-insensitive); None for anything else."""
    return token[1].upper() if token[0] == "word" else None


def statement_access(text: str) -> Access:
    """The table a PartiQL statement reads or writes (an index's base table).

    Exactly one table must be named, right after FROM, INTO or UPDATE.

    Raises:
        Unattributable: anything else (joins, subqueries, comments, unknown statements).
    """
    tokens = _tokens(text)
    verb = _keyword(tokens[0]) if tokens else None
    if verb not in _READ_STATEMENTS | _WRITE_STATEMENTS:
        raise Unattributable("a statement that does not start with SELECT, INSERT, UPDATE, DELETE or EXISTS")
    places = [i for i, token in enumerate(tokens) if _keyword(token) in _TABLE_KEYWORDS]
    if len(places) != 1:
        raise Unattributable("a statement naming no table or several")
    index = places[0] + 1
    if index >= len(tokens) or tokens[index][0] not in ("ident", "word"):
        raise Unattributable("no table name after " + tokens[places[0]][1])
    table = tokens[index][1]
    index += 1
    if index + 1 < len(tokens) and tokens[index] == ("other", ".") and tokens[index + 1][0] in ("ident", "word"):
        index += 2  # "Table"."Index": the base table
    follower = (_keyword(tokens[index]) or tokens[index][1]) if index < len(tokens) else None
    if follower not in _AFTER_TABLE or (follower == ")" and verb != "EXISTS"):
        raise Unattributable(f"unexpected {follower!r} after the table name")
    return Access(READ if verb in _READ_STATEMENTS else WRITE, table)


# -- parsing ------------------------------------------------------------------

def parse(document: Mapping[str, Any], keys: Iterable[str], *, source: str = "key file",
          text: str = "") -> Permissions:
    """The ``[permissions]`` table of a key file (top level or under ``[daxd]``).

    Args:
        document: the parsed TOML.
        keys: the access key ids of its ``[keys]`` table.
        source: the file's name, for messages.
        text: the file's text, to name the line of a bad rule.

    Raises:
        ConfigError: a rule names an unknown key, an unknown operation or a bad table
            pattern, or has a missing or unknown field; the message names the key and line.
    """
    known = list(keys)
    section = document.get("permissions", document.get("daxd", {}).get("permissions") if isinstance(
        document.get("daxd"), Mapping) else None)
    rules: dict[str, Rule | None] = dict.fromkeys(known)
    if section is None:
        return Permissions(rules)
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}{line_of(text, 'permissions')}: [permissions] must be a table of "
                          "[permissions.KEY] tables")
    for key, spec in section.items():
        where = f"{source}{line_of(text, key)}: [permissions.{key}]"
        if key not in rules:
            raise ConfigError(f"{where}: {key!r} is not a key of the [keys] table")
        rules[key] = _rule(spec, where)
    return Permissions(rules)


def _rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where}: must be a table with tables = [...] and operations = [...]")
    unknown = sorted(set(spec) - set(_RULE_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} (expected tables and operations)")
    tables = _strings(spec, "tables", where)
    operations = _strings(spec, "operations", where)
    for pattern in tables:
        if not _PATTERN.match(pattern):
            raise ConfigError(f"{where}: {pattern!r} is not a table name, a prefix ending in *, or *")
    categories, names = set(), set()
    for operation in operations:
        if operation in CATEGORIES:
            categories.add(operation)
        elif operation in OPERATIONS:
            names.add(operation)
        else:
            raise ConfigError(f"{where}: {operation!r} is not read, write, control or a DynamoDB operation name")
    return Rule(names=frozenset(t for t in tables if not t.endswith("*")),
                prefixes=tuple(sorted({t[:-1] for t in tables if t.endswith("*") and t != "*"})),
                all_tables="*" in tables, categories=frozenset(categories), operations=frozenset(names))


def _strings(spec: Mapping[str, Any], field: str, where: str) -> list[str]:
    value = spec.get(field)
    if value is None:
        raise ConfigError(f"{where}: {field} = [...] is missing")
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {field} must be a non-empty list of strings")
    return list(value)


def line_of(text: str, key: str) -> str:
    """``", line N"``: the ``[permissions.KEY]`` header, else the first line mentioning ``key`` ("" if none)."""
    header = re.compile(r'^\s*\[\s*(daxd\s*\.\s*)?permissions\s*\.\s*("?)' + re.escape(key) + r'\2\s*\]')
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if header.match(line):
            return f", line {number}"
    for number, line in enumerate(lines, 1):
        if key in line:
            return f", line {number}"
    return ""
