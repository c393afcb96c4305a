"""Prometheus metrics, served at /metrics by every instance."""

from __future__ import annotations

import platform

from prometheus_client import Counter, Gauge, Histogram, Info

from signoff import __version__

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

build = Info("signoff_build", "The signoff version and the Python it runs on")
build.info({"version": __version__, "python": platform.python_version()})
http_requests = Histogram(
    "signoff_http_request_duration_seconds",
    "HTTP requests by route (its path template; unmatched for paths no route serves), "
    "method and status",
    ["route", "method", "status"],
)
action_runs = Histogram(
    "signoff_action_run_duration_seconds",
    "Action calls run, by action and outcome: ok, failed or timeout",
    ["action", "outcome"],
)
bot_steps = Histogram(
    "signoff_bot_step_duration_seconds",
    "Calls of the bot (the model, for the LLM bot), by outcome: ok or failed",
    ["outcome"],
)
team_cards_waiting = Gauge(
    "signoff_team_cards_waiting",
    "Cards waiting on teammates, across instances (counted up to 1,000), when last scraped",
)
oldest_team_card_wait = Gauge(
    "signoff_team_card_oldest_wait_seconds",
    "How long the card waiting on teammates longest has waited since it opened",
)
