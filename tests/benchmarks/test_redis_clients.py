"""The Redis clients benchmark, run tiny: both clients run the script, each row printed."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.redis_clients import REDIS_URL, main


async def test_both_clients_are_measured_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    await main(argparse.Namespace(callers="1,10", commands=20, redis_url=REDIS_URL))
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:-1]]
    assert [(row[0], row[1]) for row in rows] == [
        ("1", "redis-py"), ("1", "shared"), ("10", "redis-py"), ("10", "shared"),
    ]  # fmt: skip
    assert all(float(row[-1]) > 0 for row in rows)
    assert lines[-1].startswith("Redis itself, in this run:")
