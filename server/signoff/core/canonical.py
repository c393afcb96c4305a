"""Canonical form of a card's calls and the hash that binds a decision to them.

The bytes hashed here are the bytes executed: a card holds its calls as
``[{"action": name, "args": {...}}, ...]`` and a decision must quote
``args_hash`` computed over exactly this encoding.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, TypedDict


class Call(TypedDict):
    action: str
    args: dict[str, Any]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys, no whitespace, no ASCII escaping: one text for one value.
    The audit log stores its documents so too (signoff.audit.schema)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def canonical_bytes(calls: Sequence[Call]) -> bytes:
    """The calls' canonical JSON, UTF-8 encoded."""
    return canonical_json(list(calls)).encode("utf-8")


def args_hash(calls: Sequence[Call]) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(calls)).hexdigest()
