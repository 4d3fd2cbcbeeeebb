"""Per-table cache policy: ``[tables.NAME]`` / ``[tables."Prefix*"]`` sections. Pure: parse and match.

Real workloads mix a hot read-mostly table, a table that must never be cached
(balances, tokens) and a table whose queries churn, so each table (or prefix)
may override the global flags::

    [tables.Balances]
    cache = false          # forwarded always, never stored
    [tables.Music]
    item_ttl = 3600
    query_ttl = 60
    [tables."Events*"]
    query_cache = false

An exact name wins over a prefix, a longer prefix over a shorter one, and a
table no section matches uses the global flags. The Accelerator asks
:meth:`TablePolicies.match` once per table (:meth:`daxd.accelerator.Accelerator.policy`);
docs/consistency.md says what each setting changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daxd.config import ConfigError

#: DynamoDB's table-name alphabet, optionally ending in ``*`` (a prefix); or ``*`` alone.
_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,255}\*?$|^\*$")
_FIELDS = ("cache", "item_ttl", "query_ttl", "query_cache")


@dataclass(frozen=True, slots=True, kw_only=True)
class TablePolicy:
    """What one ``[tables.X]`` section sets; None leaves the global flag in force."""

    cache: bool = True
    item_ttl: float | None = None
    query_ttl: float | None = None
    query_cache: bool = True

    def describe(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS if getattr(self, name) is not None}


class TablePolicies:
    """Table name patterns -> policies, with the matching rule above."""

    def __init__(self, rules: Mapping[str, TablePolicy] | None = None) -> None:
        self.rules: dict[str, TablePolicy] = dict(rules or {})
        self._exact = {name: policy for name, policy in self.rules.items() if not name.endswith("*")}
        self._prefixes = sorted(((name[:-1], name, policy) for name, policy in self.rules.items()
                                 if name.endswith("*")), key=lambda entry: -len(entry[0]))

    def match(self, table: str) -> tuple[str, TablePolicy] | None:
        """The section that applies to ``table`` (its pattern and policy), or None."""
        policy = self._exact.get(table)
        if policy is not None:
            return table, policy
        for prefix, pattern, policy in self._prefixes:
            if table.startswith(prefix):
                return pattern, policy
        return None

    def __bool__(self) -> bool:
        return bool(self.rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TablePolicies) and self.rules == other.rules

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.rules)))

    def __repr__(self) -> str:
        return f"TablePolicies({self.rules!r})"


def parse_tables(section: Any, source: str = "config file") -> TablePolicies:
    """The ``[tables]`` table of a config file, or the ``tables=`` mapping of ``daxd.accelerate``.

    Raises:
        ConfigError: not a table of tables, a bad pattern, an unknown field or a
            value of the wrong type; the message names the table.
    """
    if isinstance(section, TablePolicies):
        return section
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: [tables] must be a table of [tables.NAME] tables")
    rules: dict[str, TablePolicy] = {}
    for name, spec in section.items():
        where = f"{source}: [tables.{_quoted(name)}]"
        if not isinstance(name, str) or not _PATTERN.match(name):
            raise ConfigError(f"{where}: {name!r} is not a table name, a prefix ending in *, or *")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: must be a table of {', '.join(_FIELDS)}")
        unknown = sorted(set(spec) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown setting(s) {', '.join(map(str, unknown))} "
                              f"(expected {', '.join(_FIELDS)})")
        values: dict[str, Any] = {}
        for flag in ("cache", "query_cache"):
            if flag in spec:
                if not isinstance(spec[flag], bool):
                    raise ConfigError(f"{where}: {flag} must be true or false")
                values[flag] = spec[flag]
        for ttl in ("item_ttl", "query_ttl"):
            if ttl in spec:
                value = spec[ttl]
                if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                    raise ConfigError(f"{where}: {ttl} must be a number of seconds >= 0")
                values[ttl] = float(value)
        rules[name] = TablePolicy(**values)
    return TablePolicies(rules)


def _quoted(name: Any) -> str:
    text = str(name)
    return text if re.match(r"^[A-Za-z0-9_\-]+$", text) else f'"{text}"'
