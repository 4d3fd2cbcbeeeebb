"""What the operator's views read of a running node: the admin app, the dashboard and the reports.

They depend on this small protocol, not on :class:`daxd.node.Node` itself, so
the front ends and the shared tier never import the module that wires them
together (docs/architecture.md, "Import directions"); a test can hand them
any object of this shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from daxd.accelerator import Accelerator
    from daxd.cluster.view import Cluster
    from daxd.config import Settings
    from daxd.observability import Metrics
    from daxd.stats import Sampler
    from daxd.streams.tailer import StreamTailer
    from daxd.tier.client import ValkeyTier
    from daxd.tier.members import ValkeyMembers
    from daxd.upstream.client import Upstream
    from daxd.workers import WorkerContext


class NodeView(Protocol):
    """A node as its operator's views see it (read-only, but for the two actions they may ask)."""

    settings: Settings
    accelerator: Accelerator
    metrics: Metrics
    sampler: Sampler
    sample_interval: float
    started_at: float
    cluster: Cluster
    tier: ValkeyTier | None
    members: ValkeyMembers | None
    tailer: StreamTailer | None
    upstream: Upstream | None
    worker: WorkerContext | None
    http_port: int
    dax_port: int

    async def ready(self) -> tuple[bool, str]:
        """Readiness and its reason (``/ready``)."""

    def reload_keys(self) -> tuple[bool, str]:
        """Re-read the key file (``POST /auth/reload``)."""
