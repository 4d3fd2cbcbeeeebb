"""A seeded randomized differential: the official Python DAX client through daxd vs boto3 straight to DynamoDB Local.

Every table exists twice in DynamoDB Local: one copy is only ever touched
through daxd's DAX port (``amazondax``), its twin only with boto3 directly.
Each step is one random data-plane request made on both sides; the answers,
normalized (table names, set order, capacity numbers), must be equal. Every
few steps every key of every table is read through the cache and compared
with a ConsistentRead of the same table straight from DynamoDB Local, and of
its twin, so a stale cache entry or a write that went differently is caught.

The random requests cover every data-plane operation: nested projections
(list indexes, map paths, overlapping paths), Select in every form,
conditions that hold and fail, every ReturnValues, batches over several
tables, transactions with cancellation reasons, GSI and LSI queries,
pagination page by page, parallel scans, and values of every type (numbers of
every magnitude as range keys, so LexDecimal is exercised).

The requests keep clear of the Python client's own deviations (docs/dax.md):
names go through ExpressionAttributeNames or are not reserved words, update
expressions are never empty, keys carry only key attributes, numbers are ones
the client can parse.

Short runs are part of the test suite (tests/compat/test_python_differential.py);
long ones are run by hand::

    python -m tests.compat.differential --steps 10000 --seed 7
    python -m tests.compat.differential --steps 2000 --seeds 1-40
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tests.harness import unique_table

# ------------------------------------------------------------------ the tables


@dataclass(frozen=True)
class TableSpec:
    """One logical table: its key, its indexes, the keys the run uses."""

    name: str
    hash_key: tuple[str, str]
    range_key: tuple[str, str] | None
    hash_values: tuple[Any, ...]
    range_values: tuple[Any, ...] = ()
    gsis: tuple[tuple[str, tuple[str, str], tuple[str, str] | None, str], ...] = ()
    lsis: tuple[tuple[str, tuple[str, str], str], ...] = ()

    def keys(self) -> list[dict[str, Any]]:
        hash_name, hash_type = self.hash_key
        if self.range_key is None:
            return [{hash_name: {hash_type: h}} for h in self.hash_values]
        range_name, range_type = self.range_key
        return [{hash_name: {hash_type: h}, range_name: {range_type: r}}
                for h in self.hash_values for r in self.range_values]


#: Range keys of every magnitude and sign: LexDecimal must order and round-trip all of them.
SORT_NUMBERS = ("0", "1", "-1", "2.5", "-0.001", "1000000", "12345678901234567890123456789012345678",
                "1E+100", "-9.99E+125", "1E-130", "0.1", "-123.456")
MAIN = TableSpec(
    "main", ("pk", "S"), ("sk", "N"), ("p0", "p1"), SORT_NUMBERS,
    gsis=(("g-keys", ("g", "S"), ("n", "N"), "KEYS_ONLY"), ("g-all", ("g", "S"), None, "ALL")),
    lsis=(("lsi", ("ls", "N"), "INCLUDE"),))
NUMBERED = TableSpec("numbered", ("pk", "N"), ("sk", "B"), ("1", "-2.5", "1E+30", "0"),
                     (b"\x00", b"k", b"\xff\xfe"))
HASHED = TableSpec("hashed", ("pk", "S"), None, ("h0", "h1", "h2", "h3", "h4", "h5"))
SPECS = {spec.name: spec for spec in (MAIN, NUMBERED, HASHED)}


def _plain_query(spec: TableSpec, hash_name: str, value: dict[str, Any], index: str | None = None) -> dict[str, Any]:
    request = {"TableName": f"@{spec.name}", "KeyConditionExpression": "#h = :h",
               "ExpressionAttributeNames": {"#h": hash_name}, "ExpressionAttributeValues": {":h": value}}
    return {**request, "IndexName": index} if index else request


#: Whole-partition queries and whole-table scans: the reads the cache check repeats (their cached
#: results must follow every write) and the ones steps repeat most, so the query cache gets hits.
PLAIN_READS: tuple[tuple[str, dict[str, Any]], ...] = (
    *(("query", _plain_query(MAIN, "pk", {"S": p})) for p in MAIN.hash_values),
    *(("query", _plain_query(MAIN, "pk", {"S": p}, "lsi")) for p in MAIN.hash_values),
    *(("query", _plain_query(MAIN, "g", {"S": g}, index)) for g in ("g0", "g1") for index in ("g-keys", "g-all")),
    *(("query", _plain_query(NUMBERED, "pk", {"N": p})) for p in NUMBERED.hash_values),
    *(("scan", {"TableName": f"@{spec.name}"}) for spec in (MAIN, NUMBERED, HASHED)),
)


def create_twins(ddb: Any) -> dict[str, tuple[str, str]]:
    """Create each logical table twice: (the one daxd serves, the one boto3 reads directly)."""
    twins = {}
    for spec in SPECS.values():
        twins[spec.name] = (_create(ddb, spec, "dax"), _create(ddb, spec, "ref"))
    for dax_name, ref_name in twins.values():
        for name in (dax_name, ref_name):
            ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    return twins


def _create(ddb: Any, spec: TableSpec, side: str) -> str:
    name = unique_table(f"diff-{spec.name}-{side}")
    schema = [{"AttributeName": spec.hash_key[0], "KeyType": "HASH"}]
    attributes = {spec.hash_key[0]: spec.hash_key[1]}
    if spec.range_key:
        schema.append({"AttributeName": spec.range_key[0], "KeyType": "RANGE"})
        attributes[spec.range_key[0]] = spec.range_key[1]
    extra: dict[str, Any] = {}
    if spec.gsis:
        extra["GlobalSecondaryIndexes"] = []
        for index, hash_key, range_key, projection in spec.gsis:
            index_schema = [{"AttributeName": hash_key[0], "KeyType": "HASH"}]
            attributes[hash_key[0]] = hash_key[1]
            if range_key:
                index_schema.append({"AttributeName": range_key[0], "KeyType": "RANGE"})
                attributes[range_key[0]] = range_key[1]
            extra["GlobalSecondaryIndexes"].append(
                {"IndexName": index, "KeySchema": index_schema, "Projection": _projection(projection)})
    if spec.lsis:
        extra["LocalSecondaryIndexes"] = []
        for index, range_key, projection in spec.lsis:
            attributes[range_key[0]] = range_key[1]
            extra["LocalSecondaryIndexes"].append({
                "IndexName": index, "Projection": _projection(projection),
                "KeySchema": [schema[0], {"AttributeName": range_key[0], "KeyType": "RANGE"}]})
    ddb.create_table(TableName=name, KeySchema=schema, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in attributes.items()],
                     **extra)
    return name


def _projection(kind: str) -> dict[str, Any]:
    if kind == "INCLUDE":
        return {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["a", "l"]}
    return {"ProjectionType": kind}


# ------------------------------------------------------------------ values

#: No "-0": DynamoDB Local stores it as written, DynamoDB (and the DAX clients, which encode it as 0) say "0".
NUMBERS = ("0", "1", "-1", "1.50", "1e3", "2.5E-3", "123456789012345678901234567890123456",
           "-9.99999E+125", "1E-130", "0.000001", "42", "007", "-3.14159")
STRINGS = ("", "x", "y", "é✓ unicode", "long " * 30, "g0", "a.b[0]")
BINARIES = (b"", b"\x00", b"\xff\x00\x01", b"bytes" * 10)
DISTINCT_NUMBERS = ("1", "2.5", "-7", "1E+20", "0.001", "99")
PREFIXES = (b"k", b"\xff")


class Values:
    """Random AttributeValues of every type (the generator's only source of data)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def scalar(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.randrange(5)
        if kind == 0:
            return {"S": rng.choice(STRINGS)}
        if kind == 1:
            return {"N": rng.choice(NUMBERS)}
        if kind == 2:
            return {"B": rng.choice(BINARIES)}
        if kind == 3:
            return {"BOOL": rng.random() < 0.5}
        return {"NULL": True}

    def number(self) -> dict[str, Any]:
        return {"N": self.rng.choice(NUMBERS)}

    def a_set(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.randrange(3)
        if kind == 0:
            return {"SS": rng.sample(["a", "b", "c", "", "é"], rng.randint(1, 3))}
        if kind == 1:
            return {"NS": rng.sample(DISTINCT_NUMBERS, rng.randint(1, 3))}
        return {"BS": rng.sample([b"1", b"2", b"\x00", b""], rng.randint(1, 3))}

    def any(self, depth: int = 2) -> dict[str, Any]:
        roll = self.rng.random()
        if depth <= 0 or roll < 0.55:
            return self.scalar()
        if roll < 0.7:
            return self.a_set()
        if roll < 0.85:
            return {"L": [self.any(depth - 1) for _ in range(self.rng.randint(0, 3))]}
        return {"M": {name: self.any(depth - 1) for name in self.rng.sample(["x", "y", "z"], self.rng.randint(0, 3))}}

    def element(self) -> dict[str, Any]:
        """A list element shaped so paths like ``l[1].x`` and ``l[2][0]`` sometimes exist."""
        roll = self.rng.random()
        if roll < 0.5:
            return {"M": {name: self.any(1) for name in self.rng.sample(["x", "y"], self.rng.randint(0, 2))}}
        if roll < 0.75:
            return {"L": [self.scalar() for _ in range(self.rng.randint(0, 2))]}
        return self.scalar()

    def a_list(self) -> dict[str, Any]:
        return {"L": [self.element() for _ in range(self.rng.randint(0, 4))]}

    def a_map(self) -> dict[str, Any]:
        rng = self.rng
        members: dict[str, Any] = {}
        if rng.random() < 0.8:
            members["x"] = self.any(1)
        if rng.random() < 0.7:
            members["y"] = {"M": {"z": self.any(1), "w": self.a_list()}} if rng.random() < 0.7 else self.scalar()
        if rng.random() < 0.5:
            members["l"] = self.a_list()
        return {"M": members}

    def item(self, spec: TableSpec, key: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        item = dict(key)
        makers: dict[str, Callable[[], dict[str, Any]]] = {
            "a": self.any, "m": self.a_map, "l": self.a_list, "s": self.a_set,
            "e": lambda: rng.choice([{"S": ""}, {"B": b""}, {"L": []}, {"M": {}}]),
        }
        if spec is MAIN:
            makers.update({"g": lambda: {"S": rng.choice(["g0", "g1"])}, "n": self.number,
                           "ls": lambda: {"N": rng.choice(SORT_NUMBERS)}})
        for name, make in makers.items():
            if rng.random() < 0.7:
                item[name] = make()
        return item


# ------------------------------------------------------------------ expressions

Path = tuple[str | int, ...]

#: Document paths the items above may or may not hold.
PATHS: tuple[Path, ...] = (
    ("a",), ("m",), ("m", "x"), ("m", "y"), ("m", "y", "z"), ("m", "y", "w", 0), ("m", "y", "w", 1, "x"),
    ("m", "l"), ("m", "l", 1), ("m", "l", 0, "y"), ("l",), ("l", 0), ("l", 1), ("l", 2), ("l", 3),
    ("l", 0, "x"), ("l", 1, "x"), ("l", 1, "y"), ("l", 2, "x"), ("l", 3, "y"), ("l", 0, 0), ("l", 2, 1),
    ("l", 1, 0), ("s",), ("e",), ("g",), ("n",), ("ls",), ("absent",), ("absent", 0),
)
KEY_PATHS: tuple[Path, ...] = (("pk",), ("sk",))


class Expression:
    """Builds expression text with its ExpressionAttributeNames/Values (placeholders or bare names)."""

    def __init__(self, rng: random.Random, values: Values) -> None:
        self.rng = rng
        self.values = values
        self.names: dict[str, str] = {}
        self.bound: dict[str, Any] = {}
        self.use_names = rng.random() < 0.6

    def path(self, path: Path) -> str:
        text = ""
        for element in path:
            if isinstance(element, int):
                text += f"[{element}]"
                continue
            name = element
            if self.use_names or self.rng.random() < 0.2:
                name = f"#{element}"
                self.names[name] = element
            text += ("." if text else "") + name
        return text

    def value(self, value: dict[str, Any]) -> str:
        placeholder = f":v{len(self.bound)}"
        self.bound[placeholder] = value
        return placeholder

    def into(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.names:
            request["ExpressionAttributeNames"] = {**request.get("ExpressionAttributeNames", {}), **self.names}
        if self.bound:
            request["ExpressionAttributeValues"] = {**request.get("ExpressionAttributeValues", {}), **self.bound}
        return request

    # -- the grammar ------------------------------------------------------

    def projection(self, with_keys: bool = True) -> str:
        choices = PATHS + KEY_PATHS if with_keys else PATHS
        paths = self.rng.sample(choices, self.rng.randint(1, 4))
        return ", ".join(self.path(p) for p in paths)

    def condition(self, depth: int = 2, paths: tuple[Path, ...] = PATHS) -> str:
        rng = self.rng
        roll = rng.random()
        if depth > 0 and roll < 0.25:
            word = rng.choice(["AND", "OR"])
            return f"({self.condition(depth - 1, paths)}) {word} ({self.condition(depth - 1, paths)})"
        if depth > 0 and roll < 0.32:
            return f"NOT ({self.condition(depth - 1, paths)})"
        path = self.path(rng.choice(paths))
        kind = rng.randrange(9)
        if kind == 0:
            return f"attribute_exists({path})"
        if kind == 1:
            return f"attribute_not_exists({path})"
        if kind == 2:
            operator = rng.choice(["=", "<>", "<", "<=", ">", ">="])
            return f"{path} {operator} {self.value(self.values.scalar())}"
        if kind == 3:
            kind_name = rng.choice(["S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"])
            return f"attribute_type({path}, {self.value({'S': kind_name})})"
        if kind == 4:
            return f"begins_with({path}, {self.value({'S': rng.choice(['', 'x', 'g', 'lo'])})})"
        if kind == 5:
            return f"contains({path}, {self.value(self.values.scalar())})"
        if kind == 6:
            return f"size({path}) {rng.choice(['>', '<=', '='])} {self.value({'N': str(rng.randrange(4))})}"
        if kind == 7:
            low, high = sorted([rng.choice(DISTINCT_NUMBERS), rng.choice(DISTINCT_NUMBERS)], key=float)
            return f"{path} BETWEEN {self.value({'N': low})} AND {self.value({'N': high})}"
        candidates = ", ".join(self.value(self.values.scalar()) for _ in range(rng.randint(1, 3)))
        return f"{path} IN ({candidates})"

    def update(self) -> str:
        rng = self.rng
        sections: dict[str, list[str]] = {"SET": [], "REMOVE": [], "ADD": [], "DELETE": []}
        for _ in range(rng.randint(1, 3)):
            kind = rng.randrange(10)
            if kind <= 3:
                target = rng.choice([("a",), ("a",), ("m", "x"), ("m", "y", "z"), ("l", 0), ("l", 1, "x"),
                                     ("e",), ("t",), ("m",), ("m",), ("l",), ("l",)])
                value = self.values.a_list() if target == ("l",) else \
                    self.values.a_map() if target == ("m",) else self.values.any()
                sections["SET"].append(f"{self.path(target)} = {self.value(value)}")
            elif kind == 4:
                target = rng.choice([("g",), ("n",), ("ls",)])
                value = {"S": rng.choice(["g0", "g1"])} if target == ("g",) else {"N": rng.choice(SORT_NUMBERS)}
                if rng.random() < 0.1:
                    value = self.values.scalar()  # the wrong type for an index key sometimes
                sections["SET"].append(f"{self.path(target)} = {self.value(value)}")
            elif kind == 5:
                target = self.path(rng.choice([("n",), ("a",), ("t",)]))
                sign = rng.choice(["+", "-"])
                sections["SET"].append(f"{target} = {target} {sign} {self.value({'N': rng.choice(DISTINCT_NUMBERS)})}")
            elif kind == 6:
                lst = self.path(("l",))
                added = self.value({"L": [self.values.element()]})
                text = f"list_append({lst}, {added})" if rng.random() < 0.5 else f"list_append({added}, {lst})"
                sections["SET"].append(f"{lst} = {text}")
            elif kind == 7:
                target = self.path(rng.choice([("a",), ("t",)]))
                sections["SET"].append(f"{target} = if_not_exists({target}, {self.value(self.values.scalar())})")
            elif kind == 8:
                sections["REMOVE"].append(self.path(rng.choice([("a",), ("m", "x"), ("l", 0), ("l", 2), ("s",),
                                                                 ("m", "y", "z"), ("g",), ("e",)])))
            elif rng.random() < 0.5:
                target = rng.choice([("s",), ("n",), ("t",)])
                value = self.values.a_set() if target == ("s",) else {"N": rng.choice(DISTINCT_NUMBERS)}
                sections["ADD"].append(f"{self.path(target)} {self.value(value)}")
            else:
                sections["DELETE"].append(f"{self.path(('s',))} {self.value(self.values.a_set())}")
        return " ".join(f"{word} {', '.join(actions)}" for word, actions in sections.items() if actions)


# ------------------------------------------------------------------ the requests


@dataclass
class Step:
    """One request in logical table names (``@main``); ``pages``: follow LastEvaluatedKey page by page."""

    method: str
    request: dict[str, Any]
    pages: bool = False
    segments: int = 0


def _table(name: str) -> str:
    return f"@{name}"


CAPACITY = (None, "NONE", "TOTAL", "INDEXES")
SELECTS = (None, None, None, "ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "COUNT", "SPECIFIC_ATTRIBUTES")


class Generator:
    """Random steps from a seed: the same seed gives the same steps, whatever the answers."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.values = Values(self.rng)
        self.tokens = 0
        self.kinds: dict[str, Callable[[], Step]] = {
            "get": self.get, "query": self.query, "scan": self.scan, "batch_get": self.batch_get,
            "transact_get": self.transact_get, "put": self.put, "update": self.update, "delete": self.delete,
            "batch_write": self.batch_write, "transact_write": self.transact_write,
        }
        self.weights = [14, 12, 6, 6, 5, 14, 16, 6, 6, 8]

    def next(self) -> Step:
        kind = self.rng.choices(list(self.kinds), self.weights)[0]
        return self.kinds[kind]()

    # -- shared pieces --------------------------------------------------

    def spec(self) -> TableSpec:
        return self.rng.choices([MAIN, NUMBERED, HASHED], [6, 2, 2])[0]

    def key(self, spec: TableSpec) -> dict[str, Any]:
        return self.rng.choice(spec.keys())

    def expression(self) -> Expression:
        return Expression(self.rng, self.values)

    def maybe(self, request: dict[str, Any], name: str, choices: tuple[Any, ...]) -> None:
        value = self.rng.choice(choices)
        if value is not None:
            request[name] = value

    # -- reads ----------------------------------------------------------

    def get(self) -> Step:
        spec = self.spec()
        request: dict[str, Any] = {"TableName": _table(spec.name), "Key": self.key(spec)}
        expression = self.expression()
        if self.rng.random() < 0.6:
            request["ProjectionExpression"] = expression.projection()
        self.maybe(request, "ConsistentRead", (None, None, True, False))
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)
        return Step("get_item", expression.into(request))

    def _reading(self, request: dict[str, Any], expression: Expression, filter_paths: tuple[Path, ...]) -> None:
        """Filter, projection, Select, Limit, capacity: what Query and Scan share."""
        rng = self.rng
        if rng.random() < 0.35:
            request["FilterExpression"] = expression.condition(paths=filter_paths)
        if rng.random() < 0.45:
            request["ProjectionExpression"] = expression.projection()
        if rng.random() < 0.15:
            self.maybe(request, "Select", SELECTS)  # anything, valid or not
        elif rng.random() < 0.5:
            self.maybe(request, "Select", self._valid_selects(request))
        self.maybe(request, "Limit", (None, None, 1, 2, 3, 5))
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)

    @staticmethod
    def _valid_selects(request: dict[str, Any]) -> tuple[str | None, ...]:
        """The Select values DynamoDB accepts for this request (explicit ALL_ATTRIBUTES included)."""
        if "ProjectionExpression" in request:
            return (None, "SPECIFIC_ATTRIBUTES")
        index = request.get("IndexName")
        if index is None:
            return (None, "ALL_ATTRIBUTES", "COUNT")
        if index == "g-keys":
            return (None, "ALL_PROJECTED_ATTRIBUTES", "COUNT")
        if index == "lsi":  # ALL_ATTRIBUTES makes DynamoDB fetch what the index does not hold
            return (None, "ALL_ATTRIBUTES", "ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "COUNT")
        return (None, "ALL_ATTRIBUTES", "ALL_PROJECTED_ATTRIBUTES", "COUNT")

    def plain_read(self, method: str) -> Step:
        _, request = self.rng.choice([read for read in PLAIN_READS if read[0] == method])
        return Step(method, {**request}, pages=True)

    def query(self) -> Step:
        rng = self.rng
        if rng.random() < 0.25:
            return self.plain_read("query")
        spec = rng.choices([MAIN, NUMBERED, HASHED], [8, 2, 1])[0]
        request: dict[str, Any] = {"TableName": _table(spec.name)}
        expression = self.expression()
        index = rng.choice([None, None, *(g[0] for g in spec.gsis), *(lsi[0] for lsi in spec.lsis)])
        if index is None:
            hash_name, range_key = spec.hash_key[0], spec.range_key
            hash_value = self.key(spec)[hash_name]
        elif index == "lsi":
            hash_name, range_key = "pk", ("ls", "N")
            hash_value = {"S": rng.choice(MAIN.hash_values)}
        else:
            hash_name = "g"
            range_key = ("n", "N") if index == "g-keys" else None
            hash_value = {"S": rng.choice(["g0", "g1", "g2"])}
        if index is not None:
            request["IndexName"] = index
        condition = f"{expression.path((hash_name,))} = {expression.value(hash_value)}"
        if range_key is not None and rng.random() < 0.6:
            condition += " AND " + self._range_condition(expression, range_key)
        request["KeyConditionExpression"] = condition
        self._reading(request, expression, PATHS if rng.random() < 0.9 else PATHS + KEY_PATHS)
        self.maybe(request, "ScanIndexForward", (None, True, False))
        self.maybe(request, "ConsistentRead", (None, None, None, True))
        return Step("query", expression.into(request), pages=True)

    def _range_condition(self, expression: Expression, range_key: tuple[str, str]) -> str:
        rng = self.rng
        name, kind = range_key
        path = expression.path((name,))

        def pick() -> dict[str, Any]:
            if kind == "N":
                return {"N": rng.choice((*SORT_NUMBERS, "5", "-50"))}
            return {"B": rng.choice((*NUMBERED.range_values, b"a"))}

        form = rng.randrange(4)
        if form == 0:
            return f"{path} {rng.choice(['=', '<', '<=', '>', '>='])} {expression.value(pick())}"
        if form == 1 and kind == "B":
            prefix = expression.value({"B": rng.choice(PREFIXES)})
            return f"begins_with({path}, {prefix})"
        low, high = pick(), pick()
        if kind == "N" and float(low["N"]) > float(high["N"]):
            low, high = high, low
        if kind == "B" and low["B"] > high["B"]:
            low, high = high, low
        return f"{path} BETWEEN {expression.value(low)} AND {expression.value(high)}"

    def scan(self) -> Step:
        rng = self.rng
        if rng.random() < 0.25:
            return self.plain_read("scan")
        spec = self.spec()
        request: dict[str, Any] = {"TableName": _table(spec.name)}
        expression = self.expression()
        index = rng.choice([None, None, None, *(g[0] for g in spec.gsis), *(lsi[0] for lsi in spec.lsis)])
        if index is not None:
            request["IndexName"] = index
        self._reading(request, expression, PATHS + KEY_PATHS)
        self.maybe(request, "ConsistentRead", (None, None, None, True))
        segments = rng.choice([0, 0, 0, 2, 3])
        return Step("scan", expression.into(request), pages=True, segments=segments)

    def _distinct_keys(self, spec: TableSpec, most: int) -> list[dict[str, Any]]:
        keys = spec.keys()
        return self.rng.sample(keys, self.rng.randint(1, min(most, len(keys))))

    def batch_get(self) -> Step:
        rng = self.rng
        items: dict[str, Any] = {}
        for spec in rng.sample(list(SPECS.values()), rng.randint(1, 3)):
            entry: dict[str, Any] = {"Keys": self._distinct_keys(spec, 6)}
            if rng.random() < 0.4:
                expression = self.expression()
                entry["ProjectionExpression"] = expression.projection()
                expression.into(entry)
            self.maybe(entry, "ConsistentRead", (None, None, True))
            items[_table(spec.name)] = entry
        request: dict[str, Any] = {"RequestItems": items}
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)
        return Step("batch_get_item", request)

    def transact_get(self) -> Step:
        rng = self.rng
        actions = []
        for _ in range(rng.randint(1, 4)):
            spec = self.spec()
            get: dict[str, Any] = {"TableName": _table(spec.name), "Key": self.key(spec)}
            if rng.random() < 0.5:
                expression = self.expression()
                get["ProjectionExpression"] = expression.projection()
                expression.into(get)
            actions.append({"Get": get})
        request: dict[str, Any] = {"TransactItems": actions}
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)
        return Step("transact_get_items", request)

    # -- writes ---------------------------------------------------------

    def _conditional(self, request: dict[str, Any], expression: Expression, chance: float = 0.4) -> None:
        if self.rng.random() < chance:
            request["ConditionExpression"] = expression.condition(paths=PATHS + KEY_PATHS)

    def _write_options(self, request: dict[str, Any], return_values: tuple[str | None, ...]) -> None:
        self.maybe(request, "ReturnValues", return_values)
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)
        self.maybe(request, "ReturnItemCollectionMetrics", (None, None, "NONE", "SIZE"))

    def put(self) -> Step:
        spec = self.spec()
        request: dict[str, Any] = {"TableName": _table(spec.name), "Item": self.values.item(spec, self.key(spec))}
        expression = self.expression()
        self._conditional(request, expression)
        self._write_options(request, (None, "NONE", "ALL_OLD"))
        return Step("put_item", expression.into(request))

    def update(self) -> Step:
        spec = self.spec()
        expression = self.expression()
        request: dict[str, Any] = {"TableName": _table(spec.name), "Key": self.key(spec),
                                   "UpdateExpression": expression.update()}
        self._conditional(request, expression)
        self._write_options(request, (None, "NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"))
        return Step("update_item", expression.into(request))

    def delete(self) -> Step:
        spec = self.spec()
        request: dict[str, Any] = {"TableName": _table(spec.name), "Key": self.key(spec)}
        expression = self.expression()
        self._conditional(request, expression)
        self._write_options(request, (None, "NONE", "ALL_OLD"))
        return Step("delete_item", expression.into(request))

    def batch_write(self) -> Step:
        rng = self.rng
        items: dict[str, list[dict[str, Any]]] = {}
        for spec in rng.sample(list(SPECS.values()), rng.randint(1, 3)):
            writes = []
            for key in self._distinct_keys(spec, 5):
                if rng.random() < 0.75:
                    writes.append({"PutRequest": {"Item": self.values.item(spec, key)}})
                else:
                    writes.append({"DeleteRequest": {"Key": key}})
            items[_table(spec.name)] = writes
        request: dict[str, Any] = {"RequestItems": items}
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)
        self.maybe(request, "ReturnItemCollectionMetrics", (None, "NONE", "SIZE"))
        return Step("batch_write_item", request)

    def transact_write(self) -> Step:
        rng = self.rng
        used: set[str] = set()
        actions = []
        for _ in range(rng.randint(1, 4)):
            spec = self.spec()
            key = self.key(spec)
            identity = repr((spec.name, key))
            if identity in used:
                continue
            used.add(identity)
            expression = self.expression()
            kind = rng.choice(["Put", "Update", "Delete", "ConditionCheck"])
            action: dict[str, Any] = {"TableName": _table(spec.name)}
            if kind == "Put":
                action["Item"] = self.values.item(spec, key)
            else:
                action["Key"] = key
            if kind == "Update":
                action["UpdateExpression"] = expression.update()
            self._conditional(action, expression, 1.0 if kind == "ConditionCheck" else 0.5)
            if rng.random() < 0.4:
                action["ReturnValuesOnConditionCheckFailure"] = rng.choice(["ALL_OLD", "NONE"])
            actions.append({kind: expression.into(action)})
        request: dict[str, Any] = {"TransactItems": actions}
        self.maybe(request, "ReturnConsumedCapacity", CAPACITY)
        self.maybe(request, "ReturnItemCollectionMetrics", (None, "SIZE"))
        if rng.random() < 0.3:
            self.tokens += 1
            request["ClientRequestToken"] = f"token-{self.tokens}"
        return Step("transact_write_items", request)


# ------------------------------------------------------------------ running and comparing


class Mismatch(AssertionError):
    """The two sides answered one step differently."""


def bind(value: Any, names: dict[str, str], suffix: str = "") -> Any:
    """Replace logical table names (``@main``) with physical ones, everywhere in a request."""
    if isinstance(value, dict):
        return {names.get(k, k) if isinstance(k, str) else k: bind(v, names, suffix) for k, v in value.items()}
    if isinstance(value, list):
        return [bind(v, names, suffix) for v in value]
    if isinstance(value, str):
        if value.startswith("token-"):
            return value + suffix  # one idempotency token per side
        return names.get(value, value)
    return value


_SETS = ("SS", "NS", "BS")


def number(text: str) -> str:
    """A number in plain notation without trailing zeros: the value, not the spelling.

    DynamoDB Local keeps the spelling of numbers nested in maps and lists
    ("1e3", "007") and writes big and small ones out in full, while DynamoDB
    and the DAX clients normalize them; the value is what must agree.
    """
    value = Decimal(text)
    return "0" if value.is_zero() else format(value.normalize(), "f")


def canon(value: Any, names: dict[str, str]) -> Any:
    """A response with logical table names, numbers and sets normalized, capacity reduced to who was charged."""
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            if key == "ResponseMetadata":
                continue
            if key == "ConsumedCapacity":
                charged = inner if isinstance(inner, list) else [inner]
                out[key] = sorted(names.get(c.get("TableName"), c.get("TableName")) for c in charged)
                continue
            if len(value) == 1 and key == "N" and isinstance(inner, str):
                return {key: number(inner)}
            if len(value) == 1 and key in _SETS and isinstance(inner, list):
                return {key: sorted(number(n) for n in inner) if key == "NS" else sorted(inner)}
            out[names.get(key, key)] = canon(inner, names)
        return out
    if isinstance(value, list):
        return [canon(v, names) for v in value]
    if isinstance(value, str):
        return names.get(value, value)
    return value


def _unordered(response: Any) -> Any:
    """BatchGetItem answers in no particular order."""
    if isinstance(response, dict) and "Responses" in response and isinstance(response["Responses"], dict):
        response["Responses"] = {t: sorted(items, key=order) for t, items in response["Responses"].items()}
    return response


def order(item: Any) -> str:
    """A sort key for items that ignores the order of attributes."""
    return json.dumps(item, sort_keys=True, default=repr)


def outcome(call: Callable[[], Any], names: dict[str, str]) -> tuple[Any, Any]:
    """The normalized answer, or ``("error", code, reasons)``; and the raw answer (None for an error)."""
    try:
        raw = call()
    except Exception as exc:
        return _failure(exc), None
    return _unordered(canon(raw, names)), raw


def _failure(exc: Exception) -> tuple[Any, ...]:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        reasons = None
        if "CancellationReasons" in exc.response:  # boto3
            reasons = [(r.get("Code"), r.get("Message"), "Item" in r) for r in exc.response["CancellationReasons"]]
        flat = getattr(exc, "cancellation_reasons", None)  # amazondax: code, message, item bytes, ...
        if flat:
            reasons = [(flat[i], flat[i + 1], flat[i + 2] is not None) for i in range(0, len(flat), 3)]
        return ("error", code, reasons)
    if isinstance(exc, BotoCoreError):
        return ("client error", type(exc).__name__)
    return ("crash", type(exc).__name__, str(exc))


@dataclass
class Stats:
    steps: int = 0
    calls: int = 0
    errors: int = 0
    checks: int = 0
    by_method: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)


class Differential:
    """Runs generated steps against both sides and checks the cache every ``check_every`` steps."""

    def __init__(self, dax: Any, ddb: Any, twins: dict[str, tuple[str, str]], seed: int,
                 check_every: int = 20) -> None:
        self.dax, self.ddb = dax, ddb
        self.seed = seed
        self.check_every = check_every
        self.generator = Generator(seed)
        self.dax_names = {_table(logical): pair[0] for logical, pair in twins.items()}
        self.ref_names = {_table(logical): pair[1] for logical, pair in twins.items()}
        self.logical = {physical: logical for names in (self.dax_names, self.ref_names)
                        for logical, physical in names.items()}
        self.stats = Stats()
        #: Idempotency tokens live for 10 minutes per account: unique per run and side, whatever the seed.
        self.nonce = "-" + twins[MAIN.name][0][-10:]

    def run(self, steps: int, budget: float | None = None) -> Stats:
        """Run ``steps`` steps, or fewer when ``budget`` seconds are spent (a loaded machine); then check."""
        deadline = None if budget is None else time.monotonic() + budget
        for index in range(steps):
            if deadline is not None and time.monotonic() > deadline:
                break
            step = self.generator.next()
            self.stats.by_method[step.method] = self.stats.by_method.get(step.method, 0) + 1
            self.step(index, step)
            self.stats.steps += 1
            if (index + 1) % self.check_every == 0:
                self.check_cache(index)
        self.check_cache(self.stats.steps)
        return self.stats

    def _fail(self, index: int, what: str, step: Any, ours: Any, theirs: Any) -> Mismatch:
        return Mismatch(f"seed {self.seed} step {index}: {what}\nrequest: {step!r}\n"
                        f"through daxd: {ours!r}\nDynamoDB Local: {theirs!r}")

    def _both(self, method: str, request: dict[str, Any], starts: tuple[Any, Any] = (None, None),
              ) -> tuple[Any, Any, Any, Any]:
        """Both normalized answers, and both raw ones (each side pages on with its own LastEvaluatedKey)."""
        self.stats.calls += 1
        sides = []
        for client, names, suffix, start in ((self.dax, self.dax_names, self.nonce + "d", starts[0]),
                                             (self.ddb, self.ref_names, self.nonce + "r", starts[1])):
            bound = bind(request, names, suffix)
            if start:
                bound["ExclusiveStartKey"] = start
            sides.append(outcome(lambda client=client, bound=bound: getattr(client, method)(**bound), self.logical))
        (ours, ours_raw), (theirs, theirs_raw) = sides
        if isinstance(theirs, tuple):
            self.stats.errors += 1
            what = f"{method} {theirs[1]}"
            self.stats.error_codes[what] = self.stats.error_codes.get(what, 0) + 1
        if request.get("ReturnConsumedCapacity") not in ("TOTAL", "INDEXES"):
            for answer in (ours, theirs):  # DynamoDB Local sometimes reports capacity nobody asked for
                if isinstance(answer, dict):
                    answer.pop("ConsumedCapacity", None)
        return ours, theirs, ours_raw, theirs_raw

    def step(self, index: int, step: Step) -> None:
        if not step.pages:
            ours, theirs, _, _ = self._both(step.method, step.request)
            if ours != theirs:
                raise self._fail(index, step.method, step, ours, theirs)
            return
        for segment in range(step.segments) if step.segments else [None]:
            request = dict(step.request)
            if segment is not None:
                request.update(Segment=segment, TotalSegments=step.segments)
            starts: tuple[Any, Any] = (None, None)
            for page in range(200):
                ours, theirs, ours_raw, theirs_raw = self._both(step.method, request, starts)
                if ours != theirs:
                    raise self._fail(index, f"{step.method} segment {segment} page {page}", request, ours, theirs)
                if theirs_raw is None or not theirs_raw.get("LastEvaluatedKey"):
                    break
                starts = (ours_raw["LastEvaluatedKey"], theirs_raw["LastEvaluatedKey"])

    def check_cache(self, index: int) -> None:
        """Every key and every plain read through the cache == a ConsistentRead of the same table;
        every key there == one of its twin."""
        self.stats.checks += 1
        for method, request in PLAIN_READS:
            consistent = {} if request.get("IndexName", "lsi") != "lsi" else {"ConsistentRead": True}
            cached = partial(getattr(self.dax, method), **bind(request, self.dax_names))
            direct = partial(getattr(self.ddb, method), **bind({**request, **consistent}, self.dax_names))
            (ours, _), (stored, _) = outcome(cached, self.logical), outcome(direct, self.logical)
            if ours != stored:
                raise self._fail(index, f"cache check: stale {method}", request, ours, stored)
        for logical, dax_table in self.dax_names.items():
            spec = SPECS[logical[1:]]
            keys = spec.keys()
            cached = [self.dax.get_item(TableName=dax_table, Key=key).get("Item") for key in keys]
            direct = self._consistent(dax_table, keys)
            twin = self._consistent(self.ref_names[logical], keys)
            for key, ours, stored, reference in zip(keys, cached, direct, twin, strict=True):
                ours_c, stored_c, ref_c = (canon(v, self.logical) for v in (ours, stored, reference))
                if ours_c != stored_c:
                    raise self._fail(index, f"cache check: stale {logical} {key}", key, ours_c, stored_c)
                if stored_c != ref_c:
                    raise self._fail(index, f"cache check: twins differ {logical} {key}", key, stored_c, ref_c)

    def _consistent(self, table: str, keys: list[dict[str, Any]]) -> list[Any]:
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {table: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
            while pending:
                answer = self.ddb.batch_get_item(RequestItems=pending)
                for item in answer["Responses"].get(table, []):
                    found[_key_id(item, keys[0])] = item
                pending = answer.get("UnprocessedKeys") or {}
        return [found.get(_key_id(key, keys[0])) for key in keys]


def _key_id(item: dict[str, Any], shape: dict[str, Any]) -> str:
    return repr([canon(item[name], {}) for name in shape])


# ------------------------------------------------------------------ by hand


def _seeds(text: str) -> Iterator[int]:
    for part in text.split(","):
        low, _, high = part.partition("-")
        yield from range(int(low), int(high or low) + 1)


def main(argv: list[str] | None = None) -> int:
    """Start DynamoDB Local and a daxd node, run the differential, report; exit 1 on the first mismatch."""
    from amazondax import AmazonDaxClient
    from botocore.config import Config

    from tests.harness import DaxdNode, DynamoDBLocal, client

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", default=None, help="one seed (default: 1)")
    parser.add_argument("--seeds", default=None, help="several seeds, e.g. 1-40 or 3,9,12")
    parser.add_argument("--check-every", type=int, default=20)
    args = parser.parse_args(argv)
    seeds = list(_seeds(args.seeds or args.seed or "1"))
    ddl = DynamoDBLocal()
    node = DaxdNode(ddl.endpoint)
    failed = 0
    try:
        ddb = client(ddl.endpoint)
        for seed in seeds:
            dax = AmazonDaxClient(endpoint_url=f"dax://127.0.0.1:{node.ports['dax']}", region_name="us-east-1",
                                  config=Config(retries={"max_attempts": 0}),
                                  aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")
            started = time.monotonic()
            try:
                stats = Differential(dax, ddb, create_twins(ddb), seed, args.check_every).run(args.steps)
            except Mismatch as mismatch:
                failed += 1
                print(f"MISMATCH {mismatch}", flush=True)
                continue
            finally:
                dax.close()
            print(f"seed {seed}: {stats.steps} steps, {stats.calls} request pairs ({stats.errors} errors on both "
                  f"sides), {stats.checks} cache checks, clean, {time.monotonic() - started:.1f}s", flush=True)
    finally:
        node.stop()
        ddl.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
