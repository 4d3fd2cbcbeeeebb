"""Which module may import which (docs/architecture.md, "Import directions"), checked on the source.

Imports under ``if TYPE_CHECKING:`` are annotations only and are not counted.
A rule names a module or package prefix and the prefixes it must not import;
the first line of a failure says which import broke which rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "daxd"

#: The pure core: plans, caches, decisions. No I/O, no front end, no wiring.
PURE = ("daxd.model", "daxd.messages", "daxd.cache", "daxd.flights", "daxd.accelerator", "daxd.policy",
        "daxd.config", "daxd.sigv4", "daxd.tier.shared", "daxd.streams.planner", "daxd.streams.leasing",
        "daxd.permissions")
IO_AND_WIRING = ("daxd.frontends", "daxd.node", "daxd.workers", "daxd.cli", "daxd.inprocess", "daxd.drivers",
                 "daxd.upstream", "daxd.streams.tailer", "daxd.streams.client", "daxd.tier.client",
                 "daxd.tier.members", "daxd.tier.registry", "daxd.tier.leases", "daxd.tier.reports",
                 "daxd.tier.server", "daxd.cluster", "daxd.embedded", "daxd.status")

RULES: list[tuple[str, tuple[str, ...], str]] = [
    *((pure, IO_AND_WIRING, "the pure core does no I/O and knows no front end") for pure in PURE),
    ("daxd.model", ("daxd.",), "the model is the bottom layer"),
    ("daxd.tasks", ("daxd.",), "the helper that stops background tasks is a leaf every layer may use"),
    ("daxd.accelerator", ("daxd.cluster", "daxd.streams", "daxd.tier.client"),
     "the Accelerator emits changes; peers, streams and Valkey call it, not the other way"),
    ("daxd.frontends", ("daxd.node", "daxd.workers", "daxd.cli", "daxd.streams", "daxd.inprocess",
                        "daxd.tier.client", "daxd.tier.members", "daxd.tier.leases"),
     "front ends own their wire format only; the node wires them to everything else"),
    ("daxd.tier", ("daxd.frontends", "daxd.node", "daxd.workers", "daxd.cli", "daxd.inprocess"),
     "the shared tier knows no front end and no wiring"),
    ("daxd.streams", ("daxd.frontends", "daxd.node", "daxd.workers", "daxd.cli", "daxd.tier", "daxd.cluster",
                      "daxd.inprocess", "daxd.drivers"),
     "the tailer serves a single node, a cluster and the in-process accelerator alike"),
    ("daxd.cluster", ("daxd.frontends", "daxd.node", "daxd.workers", "daxd.cli"),
     "the cluster does not encode DAX replies"),
    ("daxd.upstream", ("daxd.accelerator", "daxd.frontends", "daxd.node", "daxd.cache", "daxd.tier"),
     "the upstream client only speaks to DynamoDB"),
    ("daxd.inprocess", ("daxd.frontends", "daxd.node", "daxd.workers", "daxd.tier", "daxd.cluster"),
     "the in-process accelerator runs without a server"),
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """``daxd`` imports outside ``if TYPE_CHECKING:`` blocks, with their line numbers."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "daxd" else [f"daxd.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name == "daxd" or name.startswith("daxd.")]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_rule_names_a_module_that_exists() -> None:
    for subject, _, _ in RULES:
        assert any(_within(name, subject) for name in MODULES), f"rule for {subject}: no such module"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_in_the_allowed_directions(module: str) -> None:
    imports = _runtime_imports(ast.parse(MODULES[module].read_text()))
    broken = [f"{MODULES[module].name}:{line} imports {name}: {why}"
              for subject, forbidden, why in RULES if _within(module, subject)
              for line, name in imports
              if any(_within(name, prefix) for prefix in forbidden) and not _within(name, subject)]
    assert not broken, "\n".join(broken)
