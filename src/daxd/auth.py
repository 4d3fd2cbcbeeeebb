"""Client authentication: the ``--auth-keys`` file and the checks built on it.

A key file is TOML whose ``[keys]`` table maps access key ids to secrets::

    [keys]
    AKIDEXAMPLE = "secret"

(the same table may sit in the ``--config`` file). With keys, every front end
verifies SigV4: the HTTP front each request's ``Authorization`` header
(:func:`http_authorizer`), the DAX front each connection's
``authorizeConnection`` (:class:`DaxAuthenticator`). Without keys the node
accepts any key, as DynamoDB Local does.

Region is not checked: a daxd node serves whatever region its clients are
configured with (the upstream is signed with the node's own credentials). The
service in the scope is (``dynamodb`` over HTTP, ``dax`` over DAX), and the
signing date must be within 5 minutes of the node's clock, as AWS requires.
The clock is a parameter so tests need not patch ``datetime``.

The same file may hold per-key permissions (``[permissions.KEY]``, parsed and
decided by :mod:`daxd.permissions`). :class:`KeyRing` holds the node's keys and
permissions, enforces them for both front ends (:meth:`KeyRing.check`, counted
and logged) and re-reads the file on SIGHUP or ``POST /auth/reload``.
"""

from __future__ import annotations

import datetime
import logging
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daxd import permissions, sigv4
from daxd.config import ConfigError
from daxd.model.errors import AccessDeniedException
from daxd.observability import Metrics
from daxd.permissions import Permissions

if TYPE_CHECKING:
    from daxd.frontends.httpserver import HttpRequest  # annotations only: the front end imports this module

log = logging.getLogger("daxd.auth")

Clock = Callable[[], datetime.datetime]
#: SigV4's own tolerance for clock skew (AWS answers "Signature expired" past it).
MAX_SKEW_SECONDS = 300.0
#: At most one "access denied" log line per key in this many seconds (the metric counts them all).
DENIED_LOG_INTERVAL = 10.0


def utc_now() -> datetime.datetime:
    """The default clock."""
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class KeyFile:
    """A key file's contents: access key id -> secret, and each key's permissions."""

    secrets: dict[str, str]
    permissions: Permissions


def load_key_file(path: str | Path) -> KeyFile:
    """The ``[keys]`` and ``[permissions]`` tables of a TOML file (top level or under ``[daxd]``).

    Raises:
        ConfigError: unreadable file, bad TOML (the message names the line), no
            ``[keys]`` table, a secret that is not a non-empty string, or a bad
            permission rule (the message names the key and its line).
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"auth_keys: cannot read {path}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = "" if "line" in str(exc) else f" (line {max(len(text.splitlines()), 1)}, the last)"
        raise ConfigError(f"auth_keys: cannot read {path}: {exc}{where}") from None
    nested = data.get("daxd")
    keys = data.get("keys", nested.get("keys") if isinstance(nested, dict) else None)
    if not isinstance(keys, dict) or not keys:
        raise ConfigError(f"auth_keys: {path} has no [keys] table (access key id = \"secret\")")
    for key_id, secret in keys.items():
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"auth_keys: {path}{permissions.line_of(text, key_id)}: the secret of {key_id!r} "
                              "must be a non-empty string")
    rules = permissions.parse(data, keys, source=f"auth_keys: {path}", text=text)
    return KeyFile(dict(keys), rules)


def load_keys(path: str | Path) -> dict[str, str]:
    """The ``[keys]`` table of a key file (see :func:`load_key_file`).

    Raises:
        ConfigError: as :func:`load_key_file`.
    """
    return load_key_file(path).secrets


class KeyRing:
    """The node's keys and permissions, shared by every listener; replaced whole by :meth:`reload`.

    ``secrets`` is one dict for the node's lifetime, updated in place, so the
    authenticators holding it see a reload at once; connections stay open. A
    DAX connection authenticated with a key a reload removed is refused from
    its next request on.
    """

    def __init__(self, path: str | Path, metrics: Metrics, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = str(path)
        loaded = load_key_file(path)
        self.secrets: dict[str, str] = loaded.secrets
        self.permissions = loaded.permissions
        self.metrics = metrics
        self.clock = clock
        self._logged: dict[str | None, tuple[float, int]] = {}

    def reload(self) -> tuple[bool, str]:
        """Re-read the key file; a file that does not parse keeps the old keys and rules.

        Returns:
            (whether it was reloaded, what happened).
        """
        try:
            loaded = load_key_file(self.path)
        except ConfigError as exc:
            log.error("key file not reloaded, keeping the old keys and permissions: %s", exc)
            return False, str(exc)
        self.secrets.clear()
        self.secrets.update(loaded.secrets)
        self.permissions = loaded.permissions
        message = self.describe()
        log.info("key file reloaded: %s", message)
        return True, message

    def describe(self) -> str:
        restricted = self.permissions.restricted
        return (f"{len(self.secrets)} access key(s) from {self.path}, "
                f"{len(restricted)} with permission rules")

    def check(self, key: str | None, operation: str, request: Mapping[str, Any]) -> None:
        """Allow a DynamoDB JSON request for ``key``, or count, log and raise.

        Raises:
            AccessDeniedException: the key may not do this.
        """
        try:
            self.permissions.check(key, operation, request)
        except AccessDeniedException as exc:
            self._denied(exc)
            raise

    def check_tables(self, key: str | None, operation: str, tables: Sequence[str],
                     category: str | None = None) -> None:
        """:meth:`check` for a call that named its tables before being decoded (DAX).

        Raises:
            AccessDeniedException: the key may not do this.
        """
        try:
            self.permissions.check_tables(key, operation, tables, category)
        except AccessDeniedException as exc:
            self._denied(exc)
            raise

    def full_access(self, key: str | None) -> bool:
        """A key without rules (peer methods, which write cache entries directly, need one)."""
        return self.permissions.full_access(key)

    def _denied(self, error: AccessDeniedException) -> None:
        key: str | None = getattr(error, "key", None)
        self.metrics.access_denied(str(key))
        now = self.clock()
        last, suppressed = self._logged.get(key, (float("-inf"), 0))
        if now - last < DENIED_LOG_INTERVAL:
            self._logged[key] = (last, suppressed + 1)
            return
        self._logged[key] = (now, 0)
        more = f" ({suppressed} more refusals of this key since the last line)" if suppressed else ""
        log.warning("access denied: key %s, operation %s, table %s%s", key, getattr(error, "operation", "?"),
                    getattr(error, "table", None) or "-", more)


def http_authorizer(secrets: Mapping[str, str], clock: Clock = utc_now) -> Callable[[HttpRequest], str]:
    """An authorizer for :class:`~daxd.frontends.http.DynamoDBApp`: the signing key id, or raises.

    Raises (from the returned callable):
        MissingAuthenticationTokenException, UnrecognizedClientException,
        InvalidSignatureException: DynamoDB's answers (403) for each failure.
    """
    def authorize(request: HttpRequest) -> str:
        path, _, query = request.path.partition("?")
        return sigv4.verify(request.method, path or "/", query, request.headers, request.body, secrets, clock(),
                     MAX_SKEW_SECONDS, service="dynamodb")
    return authorize


class DaxAuthenticator:
    """Checks ``authorizeConnection`` messages against the key table."""

    def __init__(self, secrets: Mapping[str, str], clock: Clock = utc_now) -> None:
        self.secrets = secrets  # not a copy: a KeyRing reload updates it in place
        self.clock = clock

    def verify(self, access_key: str, signature: str, string_to_sign: bytes) -> str:
        """The access key id, if the signature is good.

        Raises:
            UnrecognizedClientException, InvalidSignatureException: it is not.
        """
        return sigv4.verify_dax_authorization(access_key, signature, string_to_sign, self.secrets,
                                              self.clock(), max_skew=MAX_SKEW_SECONDS)
