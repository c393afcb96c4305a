"""The widget's files as every page view of every embedding site gets them.

``widget.js`` is served minified (rjsmin, rcssmin) with ``widget.css`` inside it, as a
string the widget adopts as a constructed stylesheet: a host page's ``style-src`` need
not name signoff (constructed stylesheets are not subject to it) and a page view makes
one request, not two. Each body is compressed once per process (brotli where the browser
asks, else gzip) and sent with a strong ETag and ``stale-while-revalidate``: a browser
shows the launcher from its copy at once and asks meanwhile whether the file changed (a
304 of no body).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import brotli
import rcssmin
import rjsmin
from starlette.requests import Request
from starlette.responses import Response

# In widget.js: where the served file has the stylesheet (widget.js as it is on disk, put
# on a CDN say, finds this null and links widget.css instead).
STYLESHEET_SLOT = "/* widget.css */ null"
ENCODINGS = ("br", "gzip")
# Stale at once, but a browser may use its copy for a day while it asks (in the background)
# whether the file changed: no round trip before the launcher shows, and a release reaches
# a visitor on the page view after the one that noticed it.
CACHE_CONTROL = "max-age=0, stale-while-revalidate=86400"


@dataclass(frozen=True)
class ServedFile:
    media_type: str
    body: bytes
    etag: str
    encoded: dict[str, bytes]

    @classmethod
    def of(cls, body: bytes, media_type: str) -> ServedFile:
        return cls(
            media_type,
            body,
            etag=f'"{hashlib.sha256(body).hexdigest()[:24]}"',
            encoded={
                "br": brotli.compress(body, quality=11),
                "gzip": gzip.compress(body, compresslevel=9, mtime=0),
            },
        )

    def response(self, request: Request) -> Response:
        headers = {"cache-control": CACHE_CONTROL, "etag": self.etag, "vary": "accept-encoding"}
        if self.etag in entity_tags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        encoding = chosen_encoding(request.headers.get("accept-encoding", ""))
        if encoding is None:
            return Response(self.body, media_type=self.media_type, headers=headers)
        headers["content-encoding"] = encoding
        return Response(self.encoded[encoding], media_type=self.media_type, headers=headers)


def entity_tags(header: str) -> set[str]:
    """The tags of an If-None-Match header; ``W/`` tags compare weakly, as RFC 9110 says
    a GET's If-None-Match does."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def chosen_encoding(header: str) -> str | None:
    """brotli, else gzip, if the browser accepts it (a ``q=0`` refuses it)."""
    accepted: set[str] = set()
    refused: set[str] = set()
    for item in header.lower().split(","):
        name, _, parameters = item.strip().partition(";")
        quality = parameters.strip().removeprefix("q=")
        (accepted if not parameters or _positive(quality) else refused).add(name.strip())
    for encoding in ENCODINGS:
        if encoding in accepted or ("*" in accepted and encoding not in refused):
            return encoding
    return None


def _positive(quality: str) -> bool:
    try:
        return float(quality) > 0
    except ValueError:
        return False


@dataclass(frozen=True)
class WidgetFiles:
    script: ServedFile
    stylesheet: ServedFile


@cache
def widget_files(directory: Path) -> WidgetFiles:
    """Built once per process: brotli's best compression takes a tenth of a second."""
    script = (directory / "widget.js").read_text(encoding="utf-8")
    stylesheet = rcssmin.cssmin((directory / "widget.css").read_text(encoding="utf-8"))
    if script.count(STYLESHEET_SLOT) != 1:
        raise RuntimeError(f"{directory / 'widget.js'} has lost its {STYLESHEET_SLOT!r} slot")
    # Put in before minifying, which drops the slot's comment but never touches a string.
    # JSON is a JavaScript string literal; ensure_ascii also escapes U+2028 and U+2029.
    script = rjsmin.jsmin(script.replace(STYLESHEET_SLOT, json.dumps(stylesheet)))
    return WidgetFiles(
        script=ServedFile.of(script.encode("utf-8"), "text/javascript; charset=utf-8"),
        stylesheet=ServedFile.of(stylesheet.encode("utf-8"), "text/css; charset=utf-8"),
    )
