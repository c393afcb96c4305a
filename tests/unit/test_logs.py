"""The server's logs: the redacting filter, sensitive pairs in free text, withheld messages."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from signoff.core.redact import mask_sensitive_pairs
from signoff.logs import RedactingFilter, install_redaction, withheld

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
