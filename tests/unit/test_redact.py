"""Redaction: sensitive fields masked, freeform text digested, card numbers masked."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from signoff.core.redact import (
    REDACTED,
    freeform_digest,
    is_sensitive_name,
    mask_card_numbers,
    redact,
    scrub_text,
    strings_in,
)

KEY = b"k" * 32
VISA = "4111111111111111"  # Luhn-valid test number
MASTERCARD = "5500000000000004"
AMEX = "378282246310005"


def luhn_ok(number: str) -> bool:
    digits = [int(ch) for ch in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return total % 10 == 0


def test_test_numbers_are_what_they_claim() -> None:
    assert luhn_ok(VISA) and luhn_ok(MASTERCARD) and luhn_ok(AMEX)
    assert not luhn_ok("4111111111111112")
    assert not luhn_ok("1234567890123")


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "Password",
        "new_password",
        "passwd",
        "api_key",
        "apiKey",
        "API-KEY",
        "access_token",
        "refreshToken",
        "token",
        "secret",
        "secret_key",
        "secretKey",
        "card_number",
        "cardNumber",
        "cvv",
        "cvc",
    ],
)
def test_default_sensitive_names(name: str) -> None:
    assert is_sensitive_name(name)
    assert redact({name: "hunter2"}, key=KEY) == {name: REDACTED}


@pytest.mark.parametrize("name", ["order_id", "amount", "note", "customer", "description"])
def test_ordinary_names_are_kept(name: str) -> None:
    assert not is_sensitive_name(name)
    assert redact({name: "value"}, key=KEY) == {name: "value"}


def test_extra_sensitive_names_match_case_and_separator_insensitively() -> None:
    assert is_sensitive_name("pin_code", ["pinCode"])
    assert redact({"PIN-code": "1234", "pin": "x"}, sensitive=["pin_code"], key=KEY) == {
        "PIN-code": REDACTED,
        "pin": "x",
    }


def test_nested_dicts_and_lists_are_redacted() -> None:
    value = {
        "order_id": 7,
        "auth": {"password": "hunter2", "user": "ada"},
        "items": [{"api_key": "sk-live-1"}, {"name": "ok"}, ["x", {"secret_key": "s"}]],
        "tuple": ({"access_token": "t"},),
    }
    out = redact(value, key=KEY)
    assert out == {
        "order_id": 7,
        "auth": {"password": REDACTED, "user": "ada"},
        "items": [{"api_key": REDACTED}, {"name": "ok"}, ["x", {"secret_key": REDACTED}]],
        "tuple": [{"access_token": REDACTED}],
    }
    dumped = json.dumps(out)
    for secret in ("hunter2", "sk-live-1", '"s"', '"t"'):
        assert secret not in dumped


def test_redact_does_not_modify_its_input() -> None:
    value = {"password": "hunter2", "nested": {"token": "t"}}
    redact(value, key=KEY)
    assert value == {"password": "hunter2", "nested": {"token": "t"}}


def test_a_sensitive_container_is_redacted_whole() -> None:
    assert redact({"secret": {"a": 1}}, key=KEY) == {"secret": REDACTED}


def test_freeform_is_length_and_hmac_only() -> None:
    note = "please refund, my dog ate the parcel"
    out = redact({"note": note, "amount": 20}, freeform=["note"], key=KEY)
    assert out["amount"] == 20
    assert set(out["note"]) == {"length", "hmac"}
    assert out["note"]["length"] == len(note)
    expected = hmac.new(KEY, note.encode(), hashlib.sha256).hexdigest()
    assert out["note"]["hmac"] == "hmac-sha256:" + expected
    dumped = json.dumps(out, ensure_ascii=False)
    assert note not in dumped
    assert "dog" not in dumped


def test_freeform_length_counts_characters() -> None:
    assert freeform_digest(KEY, "Zoë 🎉")["length"] == 5


def test_freeform_digest_is_keyed() -> None:
    same = freeform_digest(KEY, "hello")
    assert freeform_digest(KEY, "hello") == same
    assert freeform_digest(b"another key", "hello")["hmac"] != same["hmac"]
    assert freeform_digest(KEY, "hello!")["hmac"] != same["hmac"]
    plain = "hmac-sha256:" + hashlib.sha256(b"hello").hexdigest()
    assert same["hmac"] != plain


def test_freeform_applies_in_nested_values() -> None:
    out = redact({"lines": [{"note": "private words"}]}, freeform=["note"], key=KEY)
    assert "private words" not in json.dumps(out)
    assert out["lines"][0]["note"]["length"] == len("private words")


def test_absent_freeform_stays_absent() -> None:
    assert redact({"note": None}, freeform=["note"], key=KEY) == {"note": None}


def test_non_string_freeform_is_digested_as_json() -> None:
    lines = ["my words", "and more"]
    out = redact({"lines": lines}, freeform=["lines"], key=KEY)
    assert out == {"lines": freeform_digest(KEY, json.dumps(lines, sort_keys=True))}
    assert "my words" not in json.dumps(out)


@pytest.mark.parametrize(
    "text",
    [
        VISA,
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        MASTERCARD,
        AMEX,
        "3782 822463 10005",
    ],
)
def test_luhn_valid_card_numbers_are_masked(text: str) -> None:
    assert mask_card_numbers(f"my card is {text}, thanks") == f"my card is {REDACTED}, thanks"


def test_several_cards_in_one_string_are_masked() -> None:
    masked = mask_card_numbers(f"{VISA} or {MASTERCARD}")
    assert masked == f"{REDACTED} or {REDACTED}"


@pytest.mark.parametrize(
    ("text", "leftover"),
    [
        ("card 4111 1111 1111 1111 12/26 cvc 123", " 12/26 cvc 123"),
        (f"card {VISA} 12 26", " 12 26"),
        (f"qty 2 {VISA}", None),
    ],
)
def test_card_number_next_to_other_digits_is_still_masked(text: str, leftover: str | None) -> None:
    masked = mask_card_numbers(text)
    assert "1111" not in masked
    assert REDACTED in masked
    if leftover is not None:
        assert masked.endswith(leftover)


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112",
        "ref 1234567890123",
        "call 555-123-4567",
        "order 1001",
        "id 41111111111111110000",  # too long for a card
    ],
)
def test_luhn_invalid_or_short_digit_runs_are_left_alone(text: str) -> None:
    assert mask_card_numbers(text) == text


def test_card_numbers_in_string_values_are_masked_by_redact() -> None:
    value: dict[str, Any] = {"comment": f"use {VISA}", "list": [f"x {AMEX}"]}
    out = redact(value, key=KEY)
    assert out == {"comment": f"use {REDACTED}", "list": [f"x {REDACTED}"]}


def test_a_message_part_that_quotes_a_private_value_goes_whole() -> None:
    message = f"card {VISA} declined; note was leave it at the door. Try again"
    assert (
        scrub_text(message, ["leave it at the door"])
        == f"card {REDACTED} declined; {REDACTED}. Try again"
    )
    assert scrub_text("first line\nhunter2 was wrong", ["hunter2"]) == f"first line\n{REDACTED}"


def test_a_value_quoted_across_sentences_takes_them_all() -> None:
    message = "note was Leave it. Thanks; try again. Later"
    assert scrub_text(message, ["Leave it. Thanks"]) == f"{REDACTED}; try again. Later"
    assert scrub_text("a x. b x. c", ["x"]) == f"{REDACTED}. {REDACTED}. c"


def test_a_short_value_is_not_found_inside_words_so_nothing_shows_where_it_was() -> None:
    message = "refund: mood: Extra inputs are not permitted"
    assert scrub_text(message, ["x", "in", "e"]) == message
    assert scrub_text("note 'x' is too short", ["x"]) == REDACTED
    assert redact({"echo": "Extra"}, quoted=["x"], key=KEY) == {"echo": "Extra"}


def test_a_string_that_quotes_a_private_value_is_masked_whole() -> None:
    out = redact({"echo": "note: x!", "list": ["said x", "ok"]}, quoted=["x"], key=KEY)
    assert out == {"echo": REDACTED, "list": [REDACTED, "ok"]}


def test_all_freeform_digests_every_string_at_any_depth() -> None:
    args = {"notes": "x", "n": 7, "deep": [{"text": "hello"}], "password": "hunter2"}
    out = redact(args, key=KEY, all_freeform=True)
    assert out == {
        "notes": freeform_digest(KEY, "x"),
        "n": 7,
        "deep": [{"text": freeform_digest(KEY, "hello")}],
        "password": REDACTED,
    }
    assert strings_in(args) == ["x", "hello", "hunter2"]
