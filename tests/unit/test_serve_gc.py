"""``signoff serve`` tunes the cycle collector for a server's heap before it starts serving."""

from __future__ import annotations

import argparse
import gc
import logging.config
from pathlib import Path

import pytest
import uvicorn

from signoff import cli
from tests.support import CountingShop, settings


def test_serve_tunes_the_collector_for_a_long_lived_heap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, ...]] = []
    frozen: list[int] = []

    def run(self: uvicorn.Server) -> None:
        seen.append(gc.get_threshold())
        frozen.append(gc.get_freeze_count())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    monkeypatch.setattr(logging.config, "dictConfig", lambda config: None)  # pytest's stays
    args = argparse.Namespace(
        host="127.0.0.1",
        port=0,
        root_path="",
        proxy_headers=True,
        forwarded_allow_ips="127.0.0.1",
        log_level="info",
        log_format="text",
    )
    before = gc.get_threshold()
    try:
        cli.serve(CountingShop().app, settings(tmp_path), args)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
    assert seen == [cli.GC_THRESHOLDS]
    assert cli.GC_THRESHOLDS[0] > before[0]
    # What was loaded before serving is left out of every later full collection.
    assert frozen[0] > 10_000
