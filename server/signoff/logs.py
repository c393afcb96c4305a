"""The server's own logs: what they may say about the calls and people they mention.

Code in signoff never logs params, results, a visitor's words or an exception's message
from a turn (see ``withheld``). ``RedactingFilter`` is the safety net behind that rule for
what libraries and future code might still let through: card numbers and the values of
sensitively named ``name=value`` / ``"name": "value"`` pairs are masked in every line.
"""

from __future__ import annotations

import logging
import traceback

from signoff.core.redact import mask_card_numbers, mask_sensitive_pairs

# Loggers whose handlers get the filter: the root (where signoff's records end up), and
# uvicorn's, which do not propagate and print tracebacks of failed requests.
FILTERED_LOGGERS = ("", "signoff", "uvicorn", "uvicorn.error", "uvicorn.access")
# As logging.basicConfig prints, for a server whose logging nobody configured.
DEFAULT_FORMAT = "%(levelname)s:%(name)s:%(message)s"


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
