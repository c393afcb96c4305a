"""The server's logs: the redacting filter, sensitive pairs in free text, withheld messages."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from signoff.core.redact import mask_sensitive_pairs
from signoff.logs import JsonFormatter, RedactingFilter, Repeated, install_redaction, withheld

CARD = "4111 1111 1111 1111"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("password=hunter2&page=2", "password=[redacted]&page=2"),
        ('{"apiKey": "k-1 2", "n": 2}', '{"apiKey": "[redacted]", "n": 2}'),
        ("{'api_key': 'abc'}", "{'api_key': '[redacted]'}"),
        ("token: abc123, next", "token: [redacted], next"),
        ("POST /charge?secret_value=s3&x=1", "POST /charge?secret_value=[redacted]&x=1"),
        ("client_secret=abc", "client_secret=abc"),  # only names that start with secret
        ("amount=20 order=1002", "amount=20 order=1002"),
        ("ratio 3:4, time 10:30", "ratio 3:4, time 10:30"),
    ],
)
def test_sensitive_pairs_are_masked_in_free_text(text: str, masked: str) -> None:
    assert mask_sensitive_pairs(text) == masked


def test_an_actions_own_sensitive_names_count_too() -> None:
    assert mask_sensitive_pairs("pin=1234 note=hi", ["pin"]) == "pin=[redacted] note=hi"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("signoff.test_logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_the_filter_masks_messages_args_and_tracebacks(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    logger.warning("charging %s with password=%s", CARD, "hunter2")
    try:
        raise ValueError(f'bad body {{"token": "tok-9"}} for card {CARD}')
    except ValueError:
        logger.exception("request failed")
    out = stream.getvalue()
    assert "charging [redacted] with password=[redacted]" in out
    assert '{"token": "[redacted]"} for card [redacted]' in out
    assert "Traceback" in out
    for secret in ("hunter2", "tok-9", CARD):
        assert secret not in out


def test_a_record_with_nothing_to_mask_keeps_its_args(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, _ = captured
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "order %s", (1002,), None)
    assert RedactingFilter().filter(record)
    assert (record.msg, record.args) == ("order %s", (1002,))


def test_install_filters_root_and_uvicorn_handlers_once() -> None:
    root = logging.getLogger()
    uvicorn_handler = logging.StreamHandler(io.StringIO())
    uvicorn_logger = logging.getLogger("uvicorn.error")
    uvicorn_logger.addHandler(uvicorn_handler)
    before = list(root.handlers)
    try:
        install_redaction()
        install_redaction()
        assert [type(f) for f in uvicorn_handler.filters] == [RedactingFilter]
        for handler in root.handlers:
            assert [type(f) for f in handler.filters].count(RedactingFilter) == 1
    finally:
        uvicorn_logger.removeHandler(uvicorn_handler)
        for handler in root.handlers:
            handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)


def test_withheld_keeps_where_and_what_but_not_the_message() -> None:
    note = "ring twice"
    try:
        raise KeyError(note)  # the traceback shows this line of code, not the value
    except KeyError as exc:
        text = withheld(exc)
    assert "test_withheld_keeps_where_and_what_but_not_the_message" in text
    assert text.endswith("builtins.KeyError (message withheld)")
    assert "ring twice" not in text


def test_a_repeated_warning_is_said_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr("signoff.logs.time.monotonic", lambda: now[0])
    repeated = Repeated(logging.getLogger("signoff.test"), every=60)
    with caplog.at_level(logging.WARNING, "signoff.test"):
        for _ in range(30):  # the sweeper, every second while Redis is down
            repeated.warning("sweep skipped: %s", "Redis is unreachable")
            now[0] += 1
        now[0] += 31
        repeated.warning("sweep skipped: %s", "Redis is unreachable")
        repeated.ended()  # back: the next trouble is said at once
        repeated.warning("sweep skipped: %s", "again")
    assert [r.getMessage() for r in caplog.records] == [
        "sweep skipped: Redis is unreachable",
        "sweep skipped: Redis is unreachable (29 more like it in the last 61 s)",
        "sweep skipped: again",
    ]


def test_json_lines_carry_the_time_level_logger_message_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("signoff", logging.ERROR, "f", 1, "failed: %s", ("x",), None)
        record.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["logger"] == "signoff"
    assert entry["message"] == "failed: x"
    assert entry["time"].endswith("+00:00")
    assert entry["exception"].startswith("Traceback") and "ValueError: boom" in entry["exception"]
