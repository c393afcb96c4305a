"""Redaction of sensitive fields and keyed hashing of freeform text.

Runs before anything is written to the audit log or the server's logs, so a
secret or a visitor's own words never reach disk in plaintext.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

REDACTED = "[redacted]"
DIGEST_PREFIX = "hmac-sha256:"

# Field names redacted for every action, compared with "_" and "-" removed and lowercased.
_SENSITIVE_NAME = re.compile(
    r"password|passwd|passphrase|apikey|token|^secret|cardnumber|ccnumber|creditcard|^cvc$|^cvv"
)
# A run of digits, optionally grouped by single spaces or dashes. A card number is 13 to
# 19 digits of whole groups in such a run, confirmed with the Luhn check; the run may hold
# more than the card (an expiry date after it, a quantity before it).
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_SEPARATOR = re.compile(r"([ -])")
_WORD_CHAR = re.compile(r"\w")
# Where a message's parts end: after a clause or sentence, and at line breaks.
_PART_BREAK = re.compile(r"([.;]\s+|\n)")
# ``name=value``, ``name: value``, ``"name": "value"`` and the like in free text (a log
# line, an HTTP body that is not JSON, a URL's query): the value is masked when the name
# is sensitive. A quoted value runs to its closing quote; a bare one to a delimiter.
_PAIR = re.compile(
    r"""(?P<name>["']?[A-Za-z_][\w.-]*["']?)(?P<sep>\s*[=:]\s*)"""
    r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&"'<>(){}\[\]]+)"""
)


def normalise_name(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


def is_sensitive_name(name: str, extra: Collection[str] = ()) -> bool:
    return _is_sensitive(name, frozenset(extra))


@functools.lru_cache(maxsize=4096)
def _is_sensitive(name: str, extra: frozenset[str]) -> bool:
    # Cached: asked for every key of every card frame and audit row.
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


def _mask_run(run: str) -> str:
    parts = _SEPARATOR.split(run)  # digit groups at even indexes, separators between
    out: list[str] = []
    start = 0
    while start < len(parts):
        end, digits = None, ""
        for index in range(start, len(parts), 2):  # the longest card starting here
            digits += parts[index]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _luhn_ok(digits):
                end = index
        if end is None:
            out.extend(parts[start : start + 2])
            start += 2
        else:
            out.append(REDACTED)
            out.extend(parts[end + 1 : end + 2])
            start = end + 2
    return "".join(out)


def mask_card_numbers(text: str) -> str:
    return _DIGIT_RUN.sub(lambda match: _mask_run(match.group()), text)


def freeform_digest(key: bytes, text: str) -> dict[str, Any]:
    """What the audit log keeps of text a person typed: its length and a keyed hash."""
    mac = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return {"length": len(text), "hmac": DIGEST_PREFIX + mac}


def is_digest(value: Any) -> bool:
    """Whether ``value`` is what ``freeform_digest`` makes (or looks just like it)."""
    return (
        isinstance(value, dict)
        and value.keys() == {"length", "hmac"}
        and str(value["hmac"]).startswith(DIGEST_PREFIX)
    )


def redact(
    value: Any,
    *,
    sensitive: Collection[str] = (),
    freeform: Collection[str] = (),
    quoted: Collection[str] = (),
    key: bytes,
    all_freeform: bool = False,
) -> Any:
    """A copy of ``value`` with sensitive fields masked and freeform fields digested; in
    every other string, card numbers are masked, and a string that quotes one of the
    ``quoted`` texts (a call's own secrets and free text, echoed back under another name)
    is masked whole. ``all_freeform``: every string is digested as freeform text, for
    a call never checked against its action, whose free text may be under any name."""
    return _Redaction(sensitive, freeform, quote_finder(quoted), key, all_freeform).walk(value)


class _Redaction:
    """One call of ``redact``. A class, not a closure: a nested function that calls
    itself is a reference cycle, left for the cycle collector on every audit row."""

    def __init__(
        self,
        sensitive: Collection[str],
        freeform: Collection[str],
        quotes: re.Pattern[str] | None,
        key: bytes,
        all_freeform: bool,
    ) -> None:
        self.sensitive = sensitive
        self.freeform = freeform
        self.quotes = quotes
        self.key = key
        self.all_freeform = all_freeform

    def walk(self, item: Any) -> Any:
        if isinstance(item, Mapping):
            out: dict[str, Any] = {}
            for name, inner in item.items():
                if is_sensitive_name(str(name), self.sensitive):
                    out[name] = REDACTED
                elif name in self.freeform and inner is not None:
                    text = inner if isinstance(inner, str) else json.dumps(inner, sort_keys=True)
                    out[name] = freeform_digest(self.key, text)
                else:
                    out[name] = self.walk(inner)
            return out
        if isinstance(item, list | tuple):
            return [self.walk(inner) for inner in item]
        if isinstance(item, str):
            if self.all_freeform:
                return freeform_digest(self.key, item)
            if self.quotes is not None and self.quotes.search(item):
                return REDACTED
            return mask_card_numbers(item)
        return item


def strings_in(value: Any) -> list[str]:
    """Every string in a JSON value, at any depth (not its keys)."""
    if isinstance(value, Mapping):
        return [text for inner in value.values() for text in strings_in(inner)]
    if isinstance(value, list | tuple):
        return [text for inner in value for text in strings_in(inner)]
    return [value] if isinstance(value, str) else []


def quote_finder(values: Collection[str]) -> re.Pattern[str] | None:
    """What finds ``values`` quoted in a text (None if there are none): each one not
    glued to a letter or digit on a side where it begins or ends with one, so a short
    value inside a word ("x" in "Extra") is not taken for a quote of it."""
    alternatives = [
        (r"(?<!\w)" if _WORD_CHAR.match(v[0]) else "")
        + re.escape(v)
        + (r"(?!\w)" if _WORD_CHAR.match(v[-1]) else "")
        for v in sorted({v for v in values if v}, key=len, reverse=True)
    ]
    return re.compile("|".join(alternatives)) if alternatives else None


def mask_sensitive_pairs(text: str, extra: Collection[str] = ()) -> str:
    """Free text with the values of sensitively named ``name=value`` pairs masked."""
    names = frozenset(extra)

    def mask(match: re.Match[str]) -> str:
        if not _is_sensitive(match["name"].strip("\"'"), names):
            return match.group()
        value = match["value"]
        quote = value[0] if value[0] in "\"'" else ""
        return f"{match['name']}{match['sep']}{quote}{REDACTED}{quote}"

    return _PAIR.sub(mask, text)


def scrub_text(text: str, private: Collection[str]) -> str:
    """Free text (an error message, a text body) with card numbers masked and each part
    that quotes a private value (a person's own words, a secret) replaced whole.

    A part is a sentence or clause (the text is cut after ``;`` and ``.`` and at line
    breaks); a value quoted across parts takes all of them, breaks included. Masking the
    value alone would show where it was, and so what a short one was.
    """
    quotes = quote_finder(private)
    found = [] if quotes is None else [m.span() for m in quotes.finditer(text)]
    if found:
        breaks = list(_PART_BREAK.finditer(text))
        starts = [0, *(b.end() for b in breaks)]
        ends = [*(b.start() for b in breaks), len(text)]
        spans: list[tuple[int, int]] = []
        for start, end in found:  # in order of their starts
            start = max(s for s in starts if s <= start)
            end = min(e for e in ends if e >= end)
            if spans and start <= spans[-1][1]:
                start = spans[-1][0]
                end = max(end, spans.pop()[1])
            spans.append((start, end))
        for start, end in reversed(spans):
            text = text[:start] + REDACTED + text[end:]
    return mask_card_numbers(text)
