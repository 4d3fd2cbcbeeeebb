"""The seeded randomized differential (tests/compat/differential.py), short, in the test suite.

Two seeds of 150 steps each (about 10 s on an idle 2-core machine). Each test
also stops early after ``DAXD_DIFF_BUDGET`` seconds (default 20), or sooner when
the set-up already used much of the per-test timeout, so that a heavily loaded
machine cannot push it past that timeout; the steps it made are checked all the
same. ``DAXD_DIFF_STEPS`` and ``DAXD_DIFF_SEED`` choose
other runs (seeds ``DAXD_DIFF_SEED`` and the next one). Longer runs over many
seeds: ``python -m tests.compat.differential --steps 10000 --seeds 1-40``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from botocore.config import Config

from tests.compat.conftest import dax_url
from tests.compat.differential import Differential, create_twins
from tests.harness import DaxdNode

STEPS = int(os.environ.get("DAXD_DIFF_STEPS", "150"))
SEED = int(os.environ.get("DAXD_DIFF_SEED", "1"))
BUDGET = float(os.environ.get("DAXD_DIFF_BUDGET", "20"))


@pytest.mark.parametrize("seed", [SEED, SEED + 1])
def test_random_steps_through_dax_answer_as_dynamodb_local(dax_node: DaxdNode, open_dax: Any, ddb: Any,
                                                           seconds_left: Callable[[], float], seed: int) -> None:
    # No client retries: the Python client retries every 4xx-class error, a failed condition included.
    dax = open_dax(dax_url(dax_node), config=Config(retries={"max_attempts": 0}))
    twins = create_twins(ddb)
    budget = max(1.0, min(BUDGET, seconds_left() - 15))  # room for the last step, the final check, teardown
    stats = Differential(dax, ddb, twins, seed).run(STEPS, budget=budget)
    assert stats.steps > 0 and stats.checks >= 1 + stats.steps // 20
    if stats.steps == STEPS:
        assert len(stats.by_method) == 10  # every data-plane operation was made
        assert 0 < stats.errors < stats.calls  # failures were compared too, and not only failures
