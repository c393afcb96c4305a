"""The server's own logs: what they may say about the calls and people they mention.

Code in signoff never logs params, results, a visitor's words or an exception's message
from a turn (see ``withheld``). ``RedactingFilter`` is the safety net behind that rule for
what libraries and future code might still let through: card numbers and the values of
sensitively named ``name=value`` / ``"name": "value"`` pairs are masked in every line.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from signoff.core.redact import mask_card_numbers, mask_sensitive_pairs

# Loggers whose handlers get the filter: the root (where signoff's records end up), and
# uvicorn's, which do not propagate and print tracebacks of failed requests.
FILTERED_LOGGERS = ("", "signoff", "uvicorn", "uvicorn.error", "uvicorn.access")
# As logging.basicConfig prints, for a server whose logging nobody configured.
DEFAULT_FORMAT = "%(levelname)s:%(name)s:%(message)s"
# What `signoff serve` and `signoff demo` print: a time on every line.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def redact_line(text: str) -> str:
    # Cards first: a pair's bare value ends at a space, and would split a spaced number.
    return mask_sensitive_pairs(mask_card_numbers(text))


class RedactingFilter(logging.Filter):
    """Masks card numbers and sensitively named values in a record's message, exception
    text and stack; put on handlers, as a filter on a logger misses its children."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it as it would anyway
            return True
        clean = redact_line(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatted here, so the formatter prints the masked text instead of its own.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_line(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_line(record.stack_info)
        return True


def install_redaction() -> None:
    """Filter every handler that prints signoff's or uvicorn's records; called once
    logging is configured (by uvicorn), as ``signoff serve`` and ``signoff demo`` start.

    With no handler on the root, Python prints warnings through its last-resort
    handler, which takes no filters: a root handler that prints the same replaces it.
    """
    root = logging.getLogger()
    if not root.handlers:
        printer = logging.StreamHandler()
        printer.setLevel(logging.WARNING)
        printer.setFormatter(logging.Formatter(DEFAULT_FORMAT))
        root.addHandler(printer)
    for name in FILTERED_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


def withheld(exc: BaseException) -> str:
    """An exception's traceback without its message, which may quote a call's args or a
    visitor's words: where it was raised, and what type, is what an operator needs."""
    stack = "".join(traceback.format_tb(exc.__traceback__))
    return (
        f"Traceback (most recent call last):\n{stack}"
        f"{type(exc).__module__}.{type(exc).__qualname__} (message withheld)"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object a line, for log collectors: time (UTC, ISO 8601), level, logger,
    message, and the exception's traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def log_config(level: str = "info", style: str = "text") -> dict[str, Any]:
    """The logging of ``signoff serve`` and ``signoff demo`` (uvicorn's ``log_config``):
    one handler on stderr for every logger, uvicorn's included, as text lines with a time
    or as JSON lines, at ``level`` and above."""
    formatter = {"()": JsonFormatter} if style == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


class Repeated:
    """A warning that may come every second while something stays wrong (the sweeper
    while Redis is down): said at once, then at most once per ``every`` seconds, with
    how many times it came meanwhile."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger = logger
        self.every = every
        self.said_at: float | None = None
        self.held = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if self.said_at is not None:
            if now - self.said_at < self.every:
                self.held += 1
                return
            if self.held:
                message += f" ({self.held} more like it in the last {now - self.said_at:.0f} s)"
        self.logger.warning(message, *args)
        self.said_at, self.held = now, 0

    def ended(self) -> None:
        """The trouble is over: the next warning is said at once."""
        self.said_at, self.held = None, 0
