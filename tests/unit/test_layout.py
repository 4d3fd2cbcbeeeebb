"""The src/ layout: the installed package is what ``import daxd`` finds, wherever Python runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_folder_above_a_clone_named_daxd_imports_the_package(tmp_path: Path) -> None:
    clone = tmp_path / "daxd"  # a checkout of the repository, named like the package
    (clone / "docs").mkdir(parents=True)
    (clone / "README.md").write_text("daxd\n")
    found = subprocess.run([sys.executable, "-c", "import daxd; print(daxd.accelerate.__module__)"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "daxd"  # the package's own function, not a namespace of the clone
