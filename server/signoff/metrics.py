"""Prometheus metrics, served at /metrics by every instance."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

connections = Gauge("signoff_websocket_connections", "Open widget WebSocket connections")
frames_received = Counter(
    "signoff_frames_received_total", "Frames received from widgets, by type", ["type"]
)
errors_sent = Counter("signoff_errors_total", "Error frames sent to widgets, by code", ["code"])
cards_opened = Counter("signoff_cards_opened_total", "Cards opened, by approver", ["approver"])
cards_closed = Counter(
    "signoff_cards_closed_total",
    "Cards that reached a final status: done, failed, cancelled, rejected, expired, interrupted",
    ["status"],
)
audit_write_failures = Counter(
    "signoff_audit_write_failures_total",
    "Audit rows whose commit failed (their calls and decisions were refused or reported)",
)
store_unavailable = Counter(
    "signoff_store_unavailable_total", "Requests refused because the store was unreachable"
)
webhook_deliveries = Counter(
    "signoff_webhook_deliveries_total",
    "Webhook events by outcome: delivered; refused (a 4xx answer, not retried); failed "
    "(attempts ran out); dropped (the endpoint's queue was full); abandoned (at shutdown, "
    "with the memory store)",
    ["outcome"],
)
