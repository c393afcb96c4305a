"""widget.js and widget.css as embedding sites get them: compressed, revalidated, small."""

from __future__ import annotations

import gzip
import json

import brotli
import httpx
import pytest
import rcssmin

from signoff.assets import asset_dir
from signoff.web.widget_files import STYLESHEET_SLOT, chosen_encoding, entity_tags
from tests.support import Server

# What every page view of every embedding site downloads once (docs/performance.md).
BUDGET = {"br": 18_000, "gzip": 20_000}


async def test_the_script_carries_the_stylesheet_and_is_compressed_within_budget(
    demo: Server,
) -> None:
    stylesheet = rcssmin.cssmin((asset_dir("widget") / "widget.css").read_text())
    async with httpx.AsyncClient(base_url=demo.url) as http:
        plain = await http.get("/widget.js", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert json.dumps(stylesheet) in plain.text
        assert STYLESHEET_SLOT not in plain.text
        # Minified: the source's comments stay in the source.
        assert "// --- Connection" not in plain.text
        for encoding, decompress in (("br", brotli.decompress), ("gzip", gzip.decompress)):
            async with http.stream(
                "GET", "/widget.js", headers={"accept-encoding": encoding}
            ) as answer:
                assert answer.headers["content-encoding"] == encoding
                assert answer.headers["vary"] == "accept-encoding"
                wire = b"".join([chunk async for chunk in answer.aiter_raw()])
            assert decompress(wire) == plain.content
            assert len(wire) <= BUDGET[encoding], (encoding, len(wire))


@pytest.mark.parametrize("path", ["/widget.js", "/widget.css"])
async def test_a_browser_revalidates_and_gets_304_until_the_file_changes(
    demo: Server, path: str
) -> None:
    async with httpx.AsyncClient(base_url=demo.url) as http:
        first = await http.get(path)
        assert first.headers["cache-control"] == "max-age=0, stale-while-revalidate=86400"
        etag = first.headers["etag"]
        again = await http.get(path, headers={"if-none-match": f'"other", W/{etag}'})
        assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
        changed = await http.get(path, headers={"if-none-match": '"an-older-release"'})
        assert (changed.status_code, changed.content) == (200, first.content)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("gzip, deflate, br, zstd", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip;q=0.5", "gzip"),
        ("BR;Q=1", "br"),
        ("*", "br"),
        ("br;q=0, *", "gzip"),
        ("identity", None),
        ("", None),
        ("gzip;q=0", None),
        ("gzip;q=nonsense", None),
    ],
)
def test_the_encoding_is_the_best_the_browser_accepts(header: str, chosen: str | None) -> None:
    assert chosen_encoding(header) == chosen


def test_if_none_match_compares_weakly() -> None:
    assert entity_tags('W/"a", "b"') == {'"a"', '"b"'}
