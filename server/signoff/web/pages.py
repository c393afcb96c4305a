"""Headers of the HTML pages signoff serves itself: the demo and the dashboard.

Nothing but this server's own files runs or loads on them (no inline script or style), and
no other site may frame them: a framed page could be made to take a click it did not mean
(clickjacking), and the demo's widget decides cards with a click.
"""

from __future__ import annotations

# 'self' covers this server's WebSocket too (ws: and wss: to the same host and port).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # for browsers older than frame-ancestors
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
