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
"""

from __future__ import annotations

import datetime
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path

from daxd.config import ConfigError
from daxd.frontends.httpserver import HttpRequest
from daxd.upstream import sigv4

Clock = Callable[[], datetime.datetime]
#: SigV4's own tolerance for clock skew (AWS answers "Signature expired" past it).
MAX_SKEW_SECONDS = 300.0


def utc_now() -> datetime.datetime:
    """The default clock."""
    return datetime.datetime.now(datetime.UTC)


def load_keys(path: str | Path) -> dict[str, str]:
    """The ``[keys]`` table of a TOML file (top level or under ``[daxd]``).

    Raises:
        ConfigError: unreadable file, bad TOML, no ``[keys]`` table, or a
            secret that is not a non-empty string.
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"auth_keys: cannot read {path}: {exc}") from None
    keys = data.get("keys", data.get("daxd", {}).get("keys"))
    if not isinstance(keys, dict) or not keys:
        raise ConfigError(f"auth_keys: {path} has no [keys] table (access key id = \"secret\")")
    for key_id, secret in keys.items():
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"auth_keys: the secret of {key_id!r} in {path} must be a non-empty string")
    return dict(keys)


def http_authorizer(secrets: Mapping[str, str], clock: Clock = utc_now) -> Callable[[HttpRequest], None]:
    """An authorizer for :class:`~daxd.frontends.http.DynamoDBApp`: raises unless SigV4 checks out.

    Raises (from the returned callable):
        MissingAuthenticationTokenException, UnrecognizedClientException,
        InvalidSignatureException: DynamoDB's answers (403) for each failure.
    """
    def authorize(request: HttpRequest) -> None:
        path, _, query = request.path.partition("?")
        sigv4.verify(request.method, path or "/", query, request.headers, request.body, secrets, clock(),
                     MAX_SKEW_SECONDS, service="dynamodb")
    return authorize


class DaxAuthenticator:
    """Checks ``authorizeConnection`` messages against the key table."""

    def __init__(self, secrets: Mapping[str, str], clock: Clock = utc_now) -> None:
        self.secrets = dict(secrets)
        self.clock = clock

    def verify(self, access_key: str, signature: str, string_to_sign: bytes) -> str:
        """The access key id, if the signature is good.

        Raises:
            UnrecognizedClientException, InvalidSignatureException: it is not.
        """
        return sigv4.verify_dax_authorization(access_key, signature, string_to_sign, self.secrets,
                                              self.clock(), max_skew=MAX_SKEW_SECONDS)
