"""Redaction of sensitive fields and keyed hashing of freeform text.

Runs before anything is written to the audit log or the server's logs, so a
secret or a visitor's own words never reach disk in plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Mapping
from typing import Any

REDACTED = "[redacted]"

# Field names redacted for every action, compared with "_" and "-" removed and lowercased.
_SENSITIVE_NAME = re.compile(
    r"password|passwd|passphrase|apikey|token|^secret|cardnumber|ccnumber|creditcard|^cvc$|^cvv"
)
# 13 to 19 digits, optionally grouped by spaces or dashes; confirmed with the Luhn check.
_CARD_NUMBER = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")


def normalise_name(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def is_sensitive_name(name: str, extra: Collection[str] = ()) -> bool:
    key = normalise_name(name)
    return bool(_SENSITIVE_NAME.search(key)) or key in {normalise_name(n) for n in extra}


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def mask_card_numbers(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return REDACTED if _luhn_ok(digits) else match.group()

    return _CARD_NUMBER.sub(replace, text)


def freeform_digest(key: bytes, text: str) -> dict[str, Any]:
    """What the audit log keeps of text a person typed: its length and a keyed hash."""
    mac = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return {"length": len(text), "hmac": "hmac-sha256:" + mac}


def redact(
    value: Any,
    *,
    sensitive: Collection[str] = (),
    freeform: Collection[str] = (),
    key: bytes,
) -> Any:
    """A copy of ``value`` with sensitive fields masked and freeform fields digested."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for name, item in value.items():
            if is_sensitive_name(str(name), sensitive):
                out[name] = REDACTED
            elif name in freeform and isinstance(item, str):
                out[name] = freeform_digest(key, item)
            else:
                out[name] = redact(item, sensitive=sensitive, freeform=freeform, key=key)
        return out
    if isinstance(value, list | tuple):
        return [redact(item, sensitive=sensitive, freeform=freeform, key=key) for item in value]
    if isinstance(value, str):
        return mask_card_numbers(value)
    return value
