"""The instruction counter's reading of callgrind, and its arithmetic."""

from __future__ import annotations

import pytest

from benchmarks.instructions import collected, per_turn

# What callgrind prints to standard error as the process exits.
EXIT = """==4242== Events    : Ir
==4242== Collected : 4895040271
==4242==
==4242== I   refs:      4,895,040,271
"""


def test_the_count_is_read_from_what_callgrind_prints_at_exit() -> None:
    assert collected(EXIT) == 4_895_040_271


def test_a_run_that_printed_no_count_is_an_error_not_a_zero() -> None:
    with pytest.raises(RuntimeError, match="no count"):
        collected("==4242== Killed\n")


def test_what_both_runs_do_once_cancels_out() -> None:
    once, each = 3_000_000_000, 500_000
    few, many = once + 100 * each, once + 2_100 * each
    assert per_turn(few, many, 2_000) == each
