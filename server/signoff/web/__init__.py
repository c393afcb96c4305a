"""The Starlette application: WebSocket endpoint, widget, demo page, health and metrics."""
