"""The widget load benchmark, run once unthrottled: its figures must be measured, and the
two ways of shipping the widget must differ as the server's headers say they should."""

from __future__ import annotations

from benchmarks.widget_load import WAYS, run, table


async def test_each_way_is_measured_cold_and_warm() -> None:
    loads = await run(runs=1, throttle=False)
    assert [(load.way, load.cache) for load in loads] == [
        (way, cache) for way in WAYS for cache in ("empty cache", "second page view")
    ]
    served, served_again, files, _ = loads
    # Compressed, and the stylesheet inside: a fraction of the files' bytes.
    assert served.wire_bytes[0] < files.wire_bytes[0] / 3
    # The second view revalidates: headers only.
    assert 0 < served_again.wire_bytes[0] < 1000
    assert all(load.ready_ms[0] > 0 for load in loads)
    assert "| served | empty cache |" in table(loads)
