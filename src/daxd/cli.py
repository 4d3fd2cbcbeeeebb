"""The ``daxd`` command line.

Each ``serve`` flag is also a ``DAXD_<NAME>`` environment variable and a key
of the ``--config`` TOML file; flags win over the environment, the
environment over the file (see :mod:`daxd.config`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from daxd import __version__
from daxd.config import LOG_FORMATS, LOG_LEVELS, ConfigError, load
from daxd.observability import configure_logging

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: How ``serve --help`` groups its options; an option not named here is listed under "other".
OPTION_GROUPS = (
    ("Listeners", ("host", "http_port", "dax_port", "admin_port", "dax_tls_port", "http_tls_port",
                   "dax_idle_timeout", "dax_max_connections", "attribute_lists_max")),
    ("Limits", ("http_max_connections", "http_idle_timeout", "header_timeout", "body_timeout",
                "max_header_count", "max_header_size", "max_request_size", "reply_buffer", "request_budget")),
    ("Cache", ("cache_size", "item_ttl", "query_ttl", "consistent_window", "streams")),
    ("Upstream", ("upstream", "region", "profile", "upstream_timeout", "upstream_max_attempts",
                  "upstream_max_connections", "control_plane")),
    ("Cluster", ("workers", "valkey", "advertise", "node_id")),
    ("Shared tier", ("valkey_cluster", "valkey_ca", "valkey_cert", "valkey_key", "degraded_ttl")),
    ("Security", ("auth_keys", "tls_cert", "tls_key")),
    ("Operations", ("config_file", "log_level", "log_format", "shutdown_grace", "leave_period", "help")),
)
SERVE_EXAMPLES = """\b
Examples:
  daxd serve                                      # try it: the embedded in-memory backend
  daxd serve --upstream http://localhost:8000     # DynamoDB Local, Alternator, LocalStack
  daxd serve --upstream aws --region eu-west-1 --cache-size 4GiB
  DAXD_HTTP_PORT=9000 daxd serve --config daxd.toml --log-format json
  daxd serve --workers 2                          # two processes, one cache (an embedded Valkey)
  daxd serve --valkey redis://cache:6379 --advertise 10.0.0.1 --upstream aws

Every option is also an environment variable (shown in brackets) and a key of the --config file;
flags win over the environment, the environment over the file. The dashboard is at
http://HOST:ADMIN-PORT/ once the node runs."""


class GroupedCommand(click.Command):
    """A command whose --help lists options in :data:`OPTION_GROUPS`, each with its ``DAXD_*`` variable."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        records: dict[str, tuple[str, str]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or param.name is None:
                continue
            name, text = record
            if isinstance(param, click.Option) and param.name in _SETTINGS:
                text = f"{text} [env DAXD_{param.name.upper()}]"
            records["help" if "--help" in getattr(param, "opts", ()) else param.name] = (name, text)
        for title, names in (*OPTION_GROUPS, ("Other", tuple(records))):
            rows = [records.pop(n) for n in names if n in records]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _setting_names() -> frozenset[str]:
    from dataclasses import fields

    from daxd.config import Settings

    return frozenset(f.name for f in fields(Settings))


_SETTINGS = _setting_names()


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="daxd")
def main() -> None:
    """daxd: a self-hosted DynamoDB Accelerator."""


@main.command(cls=GroupedCommand, epilog=SERVE_EXAMPLES)
@click.option("--config", "config_file", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML file of settings (keys spelled like the flags, with underscores).")
@click.option("--upstream", help="DynamoDB endpoint URL, 'aws', or 'embedded' (default).")
@click.option("--region", help="AWS region (default: from the AWS chain, else us-east-1).")
@click.option("--profile", help="AWS profile for the node's own credentials.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--http-port", type=int, help="DynamoDB JSON API port (default 8112; 0 = any free port).")
@click.option("--dax-port", type=int, help="DAX protocol port (default 8111).")
@click.option("--admin-port", type=int, help="Health and metrics port (default 8113).")
@click.option("--item-ttl", type=float, help="Seconds an item entry lives (default 300; 0 = until evicted).")
@click.option("--query-ttl", type=float, help="Seconds a query/scan entry lives (default 300; 0 = no query cache).")
@click.option("--cache-size", metavar="SIZE",
              help="Memory for cached entries: bytes or KiB/MiB/GiB/TiB, KB/MB/GB/TB, e.g. 512MiB, 2GB (default 1GiB).")
@click.option("--consistent-window", type=float,
              help="Seconds after a write during which refills of that key use ConsistentRead (default 5).")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), help="Log level (default info).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS),
              help="'text' lines (default) or 'json': one JSON object per line, for log shippers.")
@click.option("--control-plane", type=click.Choice(["forward", "read-only"]),
              help="'read-only' refuses CreateTable/UpdateTable/DeleteTable and other mutating calls.")
@click.option("--streams", type=click.Choice(["on", "off"]),
              help="Follow the DynamoDB Streams of cached tables so writes made around daxd reach the cache "
                   "(default on).")
@click.option("--upstream-timeout", type=float, help="Seconds per upstream attempt (default 5).")
@click.option("--upstream-max-attempts", type=int, help="Attempts per upstream call (default 3).")
@click.option("--upstream-max-connections", type=int, help="Upstream connection pool size (default 64).")
@click.option("--shutdown-grace", type=float, help="Seconds to finish in-flight requests on SIGTERM (default 10).")
@click.option("--leave-period", type=float,
              help="Seconds a node keeps serving on SIGTERM after leaving the Valkey membership, before it "
                   "drains, so clients refresh their endpoint lists first; /ready answers 503 meanwhile (default "
                   "8 with --valkey, 0 otherwise: the official DAX clients refresh every 4 s, Python +-0.5 s "
                   "jitter; a second signal skips the wait).")
@click.option("--auth-keys", metavar="FILE", help="TOML file whose [keys] table maps access key ids to secrets; "
              "clients must then sign with one of them (default: accept any key).")
@click.option("--tls-cert", metavar="FILE",
              help="PEM certificate chain: also serve daxs:// and https:// (with --tls-key).")
@click.option("--tls-key", metavar="FILE", help="PEM private key of --tls-cert.")
@click.option("--dax-tls-port", type=int, help="DAX over TLS (daxs://) port (default 9111).")
@click.option("--http-tls-port", type=int, help="DynamoDB JSON API over HTTPS port (default 9112).")
@click.option("--attribute-lists-max", type=int,
              help="Attribute-name lists the DAX front end remembers (default 100000).")
@click.option("--dax-idle-timeout", type=float,
              help="Seconds without a request before a DAX connection is closed (default 600; 0 = never).")
@click.option("--dax-max-connections", type=int, help="Open DAX connections allowed (default 10000).")
@click.option("--http-idle-timeout", type=float,
              help="Seconds without a request before an HTTP connection is closed (default 60; 0 = never).")
@click.option("--http-max-connections", type=int, help="Open HTTP connections allowed per port (default 10000).")
@click.option("--header-timeout", type=float, help="Seconds to receive an HTTP request's headers (default 10).")
@click.option("--body-timeout", type=float,
              help="Seconds to receive a request's body, or a DAX request once begun (default 60).")
@click.option("--max-header-count", type=int, help="Headers allowed in an HTTP request (default 100).")
@click.option("--max-header-size", help="Bytes of an HTTP request's line and headers (default 16KiB).")
@click.option("--max-request-size", help="Bytes of one request: HTTP body after decompression, DAX frame "
              "(default 16MiB).")
@click.option("--reply-buffer", help="Unsent reply bytes per connection before it is no longer read or "
              "answered until the client reads (default 256KiB).")
@click.option("--request-budget", help="Bytes of large request bodies the node holds at once; more wait their "
              "turn (default 32MiB).")
@click.option("--node-id", help="This node's name in a cluster (default hostname:dax-port).")
@click.option("--advertise", help="Address clients and other nodes reach this node at (default --host, or the "
              "machine's primary address when --host is a wildcard).")
@click.option("--workers", type=int, help="Worker processes sharing the ports and one cache (default 1); more "
              "than one starts an embedded Valkey for the shared tier unless --valkey is given.")
@click.option("--valkey", help="Valkey/Redis URL of the shared cache tier (redis://host:port, rediss:// for "
              "TLS, unix:///path).")
@click.option("--valkey-cluster", is_flag=True, default=None,
              help="The Valkey is in cluster mode; --valkey names any node of it.")
@click.option("--valkey-ca", metavar="FILE", help="PEM CA bundle verifying a rediss:// Valkey (default: the system's).")
@click.option("--valkey-cert", metavar="FILE",
              help="PEM client certificate for a rediss:// Valkey (with --valkey-key).")
@click.option("--valkey-key", metavar="FILE", help="PEM private key of --valkey-cert.")
@click.option("--degraded-ttl", type=float, help="Seconds an entry may stay in this process's cache while the "
              "shared tier is unreachable (default 1).")
def serve(config_file: Path | None, **flags: Any) -> None:
    """Run a daxd node."""
    try:
        settings = load(flags, os.environ, config_file)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from daxd.workers import supervise

        try:
            sys.exit(supervise(settings))
        except OSError as exc:
            click.echo(f"daxd: cannot start: {exc}", err=True)
            sys.exit(1)
    from daxd.node import run

    try:
        run(settings)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except OSError as exc:
        click.echo(f"daxd: cannot start: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("address")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds to wait for the node.")
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
@click.option("--watch", is_flag=True, help="Refresh the tables in place until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.2), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
def status(address: str, timeout: float, as_json: bool, watch: bool, interval: float) -> None:
    """Show the cluster as the node whose admin port is ADDRESS (host:admin-port, default port 8113) sees it:
    every node, each node's workers, the shared tier and the stream leases."""
    from daxd.status import fetch_status, render_status, watch_status

    def fetch() -> dict[str, Any]:
        try:
            return fetch_status(address, timeout)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None

    if watch:
        watch_status(fetch, interval)
        return
    try:
        view = fetch()
    except OSError as exc:
        click.echo(f"daxd status: {address}: {exc}", err=True)
        sys.exit(1)
    if as_json:
        import orjson

        click.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return
    render_status(view)
