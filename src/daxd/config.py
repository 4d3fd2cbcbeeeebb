"""One settings object for ``daxd serve``: flags > ``DAXD_*`` env > TOML file > defaults.

Every flag maps one-to-one to a field, to an environment variable
(``--http-port`` is ``DAXD_HTTP_PORT``) and to a key of the ``--config`` TOML
file (``http_port``). Parsing is pure: :func:`load` takes the three sources
as arguments, so precedence is tested without touching the process.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daxd.policy import TablePolicies

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
SIZE_UNITS = "bytes, KiB, MiB, GiB, TiB (binary) or KB, MB, GB, TB (decimal)"
#: Below this ``--cache-size`` is surely a missing unit (``--cache-size 10``), not a wish.
MIN_CACHE_SIZE = 1 << 20
#: Seconds a stopping node in a Valkey membership keeps serving after it left (``--leave-period``).
#: The official DAX clients ask for the endpoint list every 4 s (Python ``amazondax``: its Cluster's
#: CLUSTER_UPDATE_INTERVAL, 4 s with +-0.5 s jitter; JavaScript ``@amazon-dax-sdk/client-dax``: its
#: ``clusterUpdateInterval`` option, default 4000 ms); the other nodes stop listing a leaver within one
#: membership refresh (1 s). 4.5 + 1 s, plus room for a slow refresh on a loaded client: 8 s.
DEFAULT_LEAVE_PERIOD = 8.0


class ConfigError(ValueError):
    """A setting has a value daxd cannot use; the message names the setting."""


#: Settings given as sizes (bytes, or with a unit).
SIZES = frozenset({"cache_size", "max_header_size", "max_request_size", "reply_buffer", "request_budget"})


def parse_size(text: str | int, name: str = "cache_size") -> int:
    """``"1GiB"`` -> 1073741824; a bare integer is bytes; KB/MB/GB are decimal, KiB/MiB/GiB binary."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if match is None:
        raise ConfigError(f"{name}: {text!r} is not a size: a number with one of the units {SIZE_UNITS} "
                          "(examples: 1048576, 512MiB, 2GB)")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything ``daxd serve`` can be told. Field names are the TOML keys."""

    upstream: str = "embedded"
    region: str | None = None
    profile: str | None = None
    host: str = "127.0.0.1"
    http_port: int = 8112
    dax_port: int = 8111
    admin_port: int = 8113
    item_ttl: float = 300.0
    query_ttl: float = 300.0
    cache_size: int = 1 << 30
    consistent_window: float = 5.0
    log_level: str = "info"
    #: "text" lines, or "json": one JSON object per line for log shippers.
    log_format: str = "text"
    control_plane: str = "forward"
    #: Follow the DynamoDB Streams of cached tables (docs/streams.md); "off": TTL expiry only, as DAX.
    streams: str = "on"
    upstream_timeout: float = 5.0
    upstream_max_attempts: int = 3
    upstream_max_connections: int = 64
    shutdown_grace: float = 10.0
    #: Seconds a stopping node serves after leaving the membership, before it drains (None: the default,
    #: :data:`DEFAULT_LEAVE_PERIOD` in a Valkey membership, 0 without one; see :attr:`leave_seconds`).
    leave_period: float | None = None
    #: TOML file whose ``[keys]`` table maps access key ids to secrets (None: accept any key).
    auth_keys: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    dax_tls_port: int = 9111
    http_tls_port: int = 9112
    #: Attribute-name lists the DAX front end remembers (the Python client caches 1000, JS 250).
    attribute_lists_max: int = 100_000
    #: Seconds without a request after which a DAX connection is closed (0: never).
    dax_idle_timeout: float = 600.0
    dax_max_connections: int = 10_000
    #: Seconds without a request before an HTTP keep-alive connection is closed (0: never).
    http_idle_timeout: float = 60.0
    http_max_connections: int = 10_000
    #: Seconds from a request's first byte to the end of its headers (HTTP).
    header_timeout: float = 10.0
    #: Seconds to receive a request's body once its headers are in (HTTP), or a DAX request once begun.
    body_timeout: float = 60.0
    max_header_count: int = 100
    max_header_size: int = 16 * 1024
    #: Bytes of one request: an HTTP body after decompression, a DAX frame (DynamoDB's limit is 16 MB).
    max_request_size: int = 16 * 1024 * 1024
    #: Unsent reply bytes per connection over which it is neither answered nor read until the client reads.
    reply_buffer: int = 256 * 1024
    #: Bytes of large (> 64 KiB) request bodies held at once by the whole node; more wait their turn.
    request_budget: int = 32 * 1024 * 1024
    #: This node's name in a cluster (None: ``hostname:dax_port``); its wire id is derived from it.
    node_id: str | None = None
    #: The address clients reach this node at (None: ``host``, or the primary address for a wildcard).
    advertise: str | None = None
    #: Per-table cache policy, the file's ``[tables.NAME]`` sections (daxd.policy); file only, no flag or env.
    tables: TablePolicies | None = None
    #: Worker processes sharing this node's ports and cache (1: one process, as without the flag).
    workers: int = 1
    #: URL of the Valkey holding the shared second tier (None: embedded when workers > 1, else none).
    valkey: str | None = None
    #: The Valkey is a cluster (``--valkey`` names any node of it).
    valkey_cluster: bool = False
    #: PEM CA bundle verifying a ``rediss://`` Valkey (None: the system's).
    valkey_ca: str | None = None
    #: PEM client certificate and key for a ``rediss://`` Valkey that asks for one (mutual TLS).
    valkey_cert: str | None = None
    valkey_key: str | None = None
    #: Seconds an L1 entry may live while the shared tier is unreachable.
    degraded_ttl: float = 1.0

    def __post_init__(self) -> None:
        for name in ("http_port", "dax_port", "admin_port", "dax_tls_port", "http_tls_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name}: {port} is not a TCP port (0 picks a free one)")
        for name in ("item_ttl", "query_ttl", "consistent_window", "upstream_timeout", "shutdown_grace",
                     "dax_idle_timeout", "http_idle_timeout", "header_timeout", "body_timeout"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0 seconds")
        if self.leave_period is not None and not 0 <= self.leave_period <= 3600:
            raise ConfigError("leave_period: must be between 0 and 3600 seconds")
        if self.cache_size < MIN_CACHE_SIZE:
            raise ConfigError(f"cache_size: {self.cache_size} bytes is too small to cache anything useful "
                              f"(minimum 1MiB; a bare number is bytes: did you mean {self.cache_size}MiB or "
                              f"{self.cache_size}GiB?)")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format: {self.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log_level: {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
        if self.streams not in ("on", "off"):
            raise ConfigError(f"streams: {self.streams!r} is not 'on' or 'off'")
        if self.control_plane not in ("forward", "read-only"):
            raise ConfigError(f"control_plane: {self.control_plane!r} is not 'forward' or 'read-only'")
        if self.upstream_max_attempts < 1 or self.upstream_max_connections < 1:
            raise ConfigError("upstream_max_attempts and upstream_max_connections must be >= 1")
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"workers: {self.workers} is not between 1 and 64")
        if self.valkey is not None and not re.match(r"^(redis|rediss|valkey|valkeys|unix)://", self.valkey):
            raise ConfigError(f"valkey: {self.valkey!r} is not a redis://, rediss://, valkey:// or unix:// URL")
        self._check_valkey()
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key: give both (a PEM certificate chain and its key) or neither")
        for name in ("attribute_lists_max", "dax_max_connections", "http_max_connections", "max_header_count"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")
        for name, least in (("max_header_size", 1024), ("max_request_size", 1024), ("reply_buffer", 4096),
                            ("request_budget", 1024)):
            if getattr(self, name) < least:
                raise ConfigError(f"{name}: must be at least {least} bytes")
        if not (self.upstream in ("embedded", "aws") or re.match(r"^https?://", self.upstream)):
            raise ConfigError(f"upstream: {self.upstream!r} is not a URL (http://host:port), 'aws' or 'embedded'")

    def _check_valkey(self) -> None:
        tls = self.valkey is not None and re.match(r"^(rediss|valkeys)://", self.valkey) is not None
        if self.valkey_cluster and (self.valkey is None or self.valkey.startswith("unix://")):
            raise ConfigError("valkey_cluster: give --valkey redis://HOST:PORT (or rediss://) of any node "
                              "of the cluster")
        for name in ("valkey_ca", "valkey_cert", "valkey_key"):
            if getattr(self, name) is not None and not tls:
                raise ConfigError(f"{name}: only for a TLS Valkey: give --valkey rediss://HOST:PORT")
        if (self.valkey_cert is None) != (self.valkey_key is None):
            raise ConfigError("valkey_cert and valkey_key: give both (a PEM client certificate and its key) or neither")
        if not 0 < self.degraded_ttl <= 60:
            raise ConfigError(f"degraded_ttl: {self.degraded_ttl} is not between 0 (excluded) and 60 seconds")

    @property
    def leave_seconds(self) -> float:
        """The leave period in force: ``--leave-period``, else 8 s for a node advertised through Valkey."""
        if self.leave_period is not None:
            return self.leave_period
        return DEFAULT_LEAVE_PERIOD if self.valkey is not None else 0.0


_FIELDS = {f.name: f for f in fields(Settings)}
#: Settings only the TOML file can give (structured: no flag, no environment variable).
_FILE_ONLY = frozenset({"tables"})


def _coerce(name: str, value: Any) -> Any:
    """Turn a string from the environment or a TOML value into the field's type."""
    kind = _FIELDS[name].type
    if name == "tables":
        from daxd.policy import parse_tables
        return parse_tables(value)
    try:
        if name in SIZES:
            return parse_size(value, name)
        if kind == "int":
            return int(value)
        if kind in ("float", "float | None"):
            return None if value is None else float(value)
        if kind == "bool":
            return _boolean(value)
        return None if value is None else str(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        expected = {"int": "a whole number", "float": "a number", "float | None": "a number",
                    "bool": "true or false"}.get(str(kind), str(kind))
        raise ConfigError(f"{name}: {value!r} is not {expected}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def env_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``DAXD_*`` variables that name a setting."""
    found = {}
    for name in _FIELDS.keys() - _FILE_ONLY:
        value = environ.get("DAXD_" + name.upper())
        if value is not None and value != "":
            found[name] = value
    return found


def file_settings(path: Path | None) -> dict[str, Any]:
    """The settings in a TOML file (top level, or a ``[daxd]`` table).

    A ``[keys]`` table there (access key id -> secret) makes the file its own
    ``auth_keys`` unless the file names another one (its ``[permissions]`` are
    read with the keys, by daxd.auth). ``[tables.NAME]`` sections are the
    per-table cache policy (daxd.policy).
    """
    if path is None:
        return {}
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    data = document.get("daxd", document)
    unknown = set(data) - set(_FIELDS) - {"keys", "permissions"}
    if unknown:
        raise ConfigError(f"config file {path}: unknown setting(s) {', '.join(sorted(unknown))}")
    found = {k: v for k, v in data.items() if k in _FIELDS}
    if "tables" in found:
        from daxd.policy import parse_tables
        found["tables"] = parse_tables(found["tables"], f"config file {path}")
    if ("keys" in data or "keys" in document) and "auth_keys" not in found:
        found["auth_keys"] = str(path)
    if ("permissions" in data or "permissions" in document) and found.get("auth_keys") != str(path):
        raise ConfigError(f"config file {path}: [permissions] must be in the same file as the [keys] they restrict")
    return found


def load(flags: Mapping[str, Any], environ: Mapping[str, str], path: Path | None) -> Settings:
    """Merge the sources: explicit flags win over env, env over the file, the file over defaults."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    sources = ((file_settings(path), lambda name: f"config file {path}, key {name}"),
               (env_settings(environ), lambda name: f"DAXD_{name.upper()}"),
               ({k: v for k, v in flags.items() if v is not None}, lambda name: "--" + name.replace("_", "-")))
    for source, where in sources:
        for name, value in source.items():
            origin[name] = where(name)
            try:
                merged[name] = _coerce(name, value)
            except ConfigError as exc:
                raise _named(exc, origin) from None
    try:
        return Settings(**merged)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    except ConfigError as exc:
        raise _named(exc, origin) from None


def _named(exc: ConfigError, origin: Mapping[str, str]) -> ConfigError:
    """The error with its setting named as the user gave it (``--cache-size``, ``DAXD_HTTP_PORT``, a file key)."""
    name, colon, rest = str(exc).partition(": ")
    return ConfigError(f"{origin[name]}: {rest}" if colon and name in origin else str(exc))


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
