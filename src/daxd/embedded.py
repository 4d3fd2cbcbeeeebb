"""The embedded default backend: try daxd with nothing else installed.

``daxd serve`` with no ``--upstream`` runs moto's DynamoDB implementation in a
thread of this process, on a free loopback port, and the node treats it as
any other URL upstream (so the embedded path exercises the real upstream
client). moto is slow and does not normalize numbers; it is for trying daxd
out, not for production data, and everything in it is lost when daxd stops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any


@dataclass
class EmbeddedBackend:
    server: Any
    endpoint: str

    @classmethod
    def start(cls) -> EmbeddedBackend:
        from moto.server import ThreadedMotoServer  # imported here: it loads Flask and every moto backend

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is daxd's job, not moto's
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        return cls(server=server, endpoint=f"http://{host}:{port}")

    def stop(self) -> None:
        self.server.stop()
