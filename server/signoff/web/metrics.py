"""Prometheus metrics, served at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

connections = Gauge("signoff_websocket_connections", "Open widget WebSocket connections")
frames_received = Counter(
    "signoff_frames_received_total", "Frames received from widgets, by type", ["type"]
)
errors_sent = Counter("signoff_errors_total", "Error frames sent to widgets, by code", ["code"])
