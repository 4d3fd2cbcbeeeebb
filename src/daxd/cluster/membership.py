"""Node names and addresses: the pieces of identity every node and ``daxd status`` share.

A node is named by ``--node-id`` (default ``hostname:dax-port``); its id on the
wire (:func:`node_id_of`) is derived from the name, so it is the same on every
run and every node computes the same id for it. Who is live is kept in Valkey
(:mod:`daxd.tier.members`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

#: Positive and inside a signed 64-bit CBOR integer, which every DAX client decodes.
_NODE_ID_MASK = (1 << 63) - 1


class AddressError(ValueError):
    """An address is not ``host:port``; the message says which."""


def node_id_of(name: str) -> int:
    """A stable positive integer for a ``--node-id``: the first 8 bytes of its SHA-256."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") & _NODE_ID_MASK


@dataclass(frozen=True, slots=True)
class LiveNode:
    """A live node as clients are told of it (DAX ``endpoints``): wire id, host name, IP, DAX port."""

    node_id: int
    host: str
    ip: str
    port: int

    def __post_init__(self) -> None:
        ipaddress.ip_address(self.ip)  # raises ValueError for a non-IP: clients need the address's bytes
        if not 0 < self.port <= 65535:
            raise ValueError(f"{self.port} is not a TCP port")


@dataclass(frozen=True, slots=True, order=True)
class Address:
    """A node's DAX address, ``host:port`` (IPv6 as ``[::1]:8111``)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``host:port``.

        Raises:
            AddressError: no port, or a port that is not a TCP port.
        """
        text = text.strip()
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise AddressError(f"{text!r} is not host:port")
        return cls(host.strip("[]"), int(port))
