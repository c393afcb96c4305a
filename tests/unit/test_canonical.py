"""canonical_bytes / args_hash: the bytes a decision is bound to."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from signoff.core.canonical import Call, args_hash, canonical_bytes


def expected_hash(calls: list[Any]) -> str:
    """The design's definition, computed independently of the module under test."""
    canonical = json.dumps(calls, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


CALLS: list[Call] = [
    {"action": "cancel_order", "args": {"order_id": 1001, "customer": "Zoë Müller"}},
    {
        "action": "refund",
        "args": {
            "order_id": 1002,
            "amount": 89.5,
            "note": "日本語 — «ok» \u2028 emoji 🎉",
            "meta": {"z": [1, {"b": 2, "a": None}], "a": True},
        },
    },
]


def test_args_hash_matches_the_design_definition() -> None:
    assert args_hash(CALLS) == expected_hash(CALLS)


def test_canonical_bytes_are_sorted_compact_utf8_without_ascii_escapes() -> None:
    data = canonical_bytes([{"args": {"b": 1, "a": "é"}, "action": "x"}])
    assert data == '[{"action":"x","args":{"a":"é","b":1}}]'.encode()
    assert b"\\u00e9" not in data
    assert "é".encode() in data


def test_non_ascii_is_hashed_as_utf8_not_as_escapes() -> None:
    calls: list[Call] = [{"action": "greet", "args": {"name": "Łukasz 🎉"}}]
    escaped = json.dumps(calls, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert args_hash(calls) == expected_hash(calls)
    assert args_hash(calls) != "sha256:" + hashlib.sha256(escaped.encode()).hexdigest()


def test_hash_format() -> None:
    value = args_hash(CALLS)
    assert value.startswith("sha256:")
    digest = value.removeprefix("sha256:")
    assert len(digest) == 64
    assert all(ch in "0123456789abcdef" for ch in digest)


def test_key_order_of_input_does_not_change_the_hash() -> None:
    a: list[Call] = [{"action": "a", "args": {"x": 1, "y": {"p": 1, "q": [1, 2]}}}]
    b: list[Call] = [{"args": {"y": {"q": [1, 2], "p": 1}, "x": 1}, "action": "a"}]
    assert args_hash(a) == args_hash(b)
    assert canonical_bytes(a) == canonical_bytes(b)


@pytest.mark.parametrize(
    "changed",
    [
        [{"action": "cancel_order", "args": {"order_id": 1003, "customer": "Zoë Müller"}}],
        [{"action": "cancel_order", "args": {"order_id": 1001, "customer": "Zoe Müller"}}],
        [{"action": "cancel_order", "args": {"order_id": "1001", "customer": "Zoë Müller"}}],
        [{"action": "cancel_order", "args": {"order_id": 1001.0, "customer": "Zoë Müller"}}],
        [{"action": "delete_order", "args": {"order_id": 1001, "customer": "Zoë Müller"}}],
        [{"action": "cancel_order", "args": {"order_id": 1001}}],
        [
            {
                "action": "cancel_order",
                "args": {"order_id": 1001, "customer": "Zoë Müller", "extra": None},
            }
        ],
    ],
)
def test_any_change_of_a_value_changes_the_hash(changed: list[Call]) -> None:
    base: list[Call] = [
        {"action": "cancel_order", "args": {"order_id": 1001, "customer": "Zoë Müller"}}
    ]
    assert args_hash(changed) != args_hash(base)
    assert args_hash(changed) == expected_hash(changed)


def test_nested_value_change_changes_the_hash() -> None:
    changed = json.loads(json.dumps(CALLS))
    changed[1]["args"]["meta"]["z"][1]["a"] = False
    assert args_hash(changed) != args_hash(CALLS)
    assert args_hash(changed) == expected_hash(changed)


def test_call_order_matters() -> None:
    assert args_hash(list(reversed(CALLS))) != args_hash(CALLS)


def test_nan_cannot_be_hashed() -> None:
    with pytest.raises(ValueError):
        canonical_bytes([{"action": "a", "args": {"x": float("nan")}}])
