"""The benchmark harness, run tiny: its figures must be counts that add up, not speeds."""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.run import (
    UNAVAILABLE,
    Bench,
    Result,
    Row,
    Settings,
    details,
    parse,
    run_bench,
    table,
)

TINY = Settings(
    idle=12,
    msg_sessions=4,
    msg_rates=(8.0,),
    card_sessions=4,
    card_rates=(4.0, 6.0),
    warmup=0.2,
    duration=0.8,
    settle=0.1,
    workers=2,
    open_concurrency=4,
    rows=("memory", "ws-echo"),
    quiet=True,
)


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return run_bench(TINY)


def test_every_row_and_phase_is_measured(results: list[Result]) -> None:
    assert [r.row.key for r in results] == ["memory", "ws-echo"]
    signoff, echo = results
    assert [(p.op, p.mode) for p in signoff.phases] == [
        ("message", "closed"),
        ("message", "paced"),
        ("stream", "closed"),
        ("card", "closed"),
        ("card", "paced"),
        ("card", "paced"),
    ]
    assert [p.offered for p in signoff.phases if p.op == "card"] == [None, 4.0, 6.0]
    assert [(p.op, p.mode) for p in echo.phases] == [
        ("message", "closed"),
        ("message", "paced"),
        ("stream", "closed"),
    ]


def test_idle_sessions_are_all_held_and_weighed(results: list[Result]) -> None:
    for result in results:
        assert result.unavailable is None
        assert result.idle_requested == result.idle_held == TINY.idle
        assert result.idle_errors == {}
        assert result.rss_idle > 0 and result.rss_base > 0


def test_round_trips_complete_without_errors_and_have_sane_latencies(results: list[Result]) -> None:
    for result in results:
        for phase in result.phases:
            expected = TINY.msg_sessions if phase.op == "message" else TINY.card_sessions
            assert phase.sessions == expected, (result.row.key, phase)
            assert phase.errors == {}, (result.row.key, phase)
            assert phase.round_trips > 0
            assert phase.per_second == phase.round_trips / TINY.duration
            assert 0 < phase.p50_ms <= phase.p99_ms <= phase.max_ms
            assert phase.server_cpu >= 0 and not math.isnan(phase.server_cpu_per_rt_us)
            assert len(phase.client_cpu) == TINY.workers


def test_the_tables_show_every_row(results: list[Result]) -> None:
    main, more = table(results, TINY), details(results)
    for result in results:
        assert result.row.label in main and result.row.label in more
    # The echo server has no cards: its card columns are dashes, not zeros.
    echo_line = next(line for line in main.splitlines() if "echo" in line)
    assert echo_line.count("—") == 3


def test_a_store_that_cannot_open_marks_its_row_unavailable(tmp_path: Path) -> None:
    bench = Bench(TINY, tmp_path)
    result = Result(Row("nowhere", "signoff nowhere", "signoff", "nowhere://"))
    tried: list[str] = []

    def message() -> None:
        tried.append("message")

    try:
        bench.attempt(result, functools.partial(bench.idle, result.row, result))
        bench.attempt(result, message)
    finally:
        bench.close()
    assert result.unavailable == UNAVAILABLE
    assert tried == []  # nothing more is tried on a row found unavailable
    assert result.phases == []
    assert UNAVAILABLE in table([result], TINY)


def phases_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The phases a run goes through, each as (row, phase), in order; none is measured."""
    ran: list[tuple[str, str]] = []
    monkeypatch.setattr(Bench, "idle", lambda self, row, result: ran.append((row.key, "idle")))
    monkeypatch.setattr(
        Bench,
        "round_trips",
        lambda self, row, result, op, mode, rate: ran.append((row.key, f"{op} {mode} {rate:g}")),
    )
    return ran


def test_rows_take_turns_scenario_by_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows of one scenario are measured close together, not a row's every phase
    before the next row's."""
    ran = phases_run(monkeypatch)
    run_bench(TINY)
    assert ran == [
        ("memory", "idle"),
        ("ws-echo", "idle"),
        ("memory", "message closed 0"),
        ("ws-echo", "message closed 0"),
        ("memory", "message paced 8"),
        ("ws-echo", "message paced 8"),
        ("memory", "stream closed 0"),
        ("ws-echo", "stream closed 0"),
        ("memory", "card closed 0"),
        ("memory", "card paced 4"),
        ("memory", "card paced 6"),
    ]


def test_flags_size_the_run() -> None:
    settings = parse(["--quick", "--card-rate", "10,20", "--rows", "memory,ws-echo", "--idle", "7"])
    assert settings.card_rates == (10.0, 20.0)
    assert settings.rows == ("memory", "ws-echo")
    assert settings.idle == 7
    assert settings.duration < Settings().duration
    with pytest.raises(SystemExit):
        parse(["--rows", "nothing"])


def test_scenarios_choose_what_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = phases_run(monkeypatch)
    settings = replace(TINY, scenarios=parse(["--scenarios", "card,stream"]).scenarios)
    run_bench(settings)
    assert ran == [
        ("memory", "stream closed 0"),
        ("ws-echo", "stream closed 0"),
        ("memory", "card closed 0"),
        ("memory", "card paced 4"),
        ("memory", "card paced 6"),
    ]
    with pytest.raises(SystemExit):
        parse(["--scenarios", "card,nothing"])
