"""What people are shown of a value: every character that draws nothing, or draws
something other than itself, made visible.

A card must show what runs. Control characters, bidi overrides and isolates, zero-width
characters, tag characters and variation selectors can hide part of a value, draw it
backwards or forge lines a card does not have. ``visible`` shows each of them as an escape
a person can read (``⟨U+202E⟩``; a newline as ``↵``), so no part of a value is hidden,
drawn out of order or split into lines of its own. Only what is shown changes: a card's
calls and their hash stay as they are.

The widget applies the same class in JavaScript (``HIDDEN`` in widget/widget.js); a test
checks that the two are written alike.
"""

from __future__ import annotations

from typing import Any

import regex

from signoff.core.redact import REDACTED, is_sensitive_name

# Controls, format characters (bidi controls, zero-width characters, the BOM, the soft
# hyphen, tags), line and paragraph separators, lone surrogates, and every other code point
# Unicode says a font may draw as nothing (variation selectors, Hangul fillers).
HIDDEN_CLASS = r"[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]"
NEWLINE_SIGN = "↵"

FIRST_STRONG_ISOLATE = "\u2068"
POP_DIRECTIONAL_ISOLATE = "\u2069"

_hidden = regex.compile(HIDDEN_CLASS)
# Right-to-left letters and Arabic digits: the characters that reorder their neighbours.
_right_to_left = regex.compile(r"[\p{Bidi_Class=R}\p{Bidi_Class=AL}\p{Bidi_Class=AN}]")


def escape(char: str) -> str:
    """The visible form of one hidden character."""
    return NEWLINE_SIGN if char == "\n" else f"⟨U+{ord(char):04X}⟩"


def visible(text: str) -> str:
    """``text`` with every hidden character replaced by its escape."""
    return _hidden.sub(lambda match: escape(match.group()), text)


def isolated(text: str) -> str:
    """``text`` for a line of plain text: one that holds right-to-left characters is wrapped
    in a first-strong isolate, so it cannot carry the text around it along.

    Left-to-right text is left as it is: it cannot move a left-to-right line, and texts
    that programs read stay free of marks they did not need.
    """
    if _right_to_left.search(text):
        return f"{FIRST_STRONG_ISOLATE}{text}{POP_DIRECTIONAL_ISOLATE}"
    return text


def shown(text: str) -> str:
    """A value as plain text shows it among other text: visible, then isolated."""
    return isolated(visible(text))


# Integers past this lose digits in JavaScript's JSON.parse; sent as strings they don't.
MAX_SAFE_INTEGER = 2**53 - 1


def displayed(value: Any, sensitive: frozenset[str] = frozenset()) -> Any:
    """A copy for people to see: sensitive names masked at any depth, big integers as text."""
    if isinstance(value, dict):
        return {
            k: REDACTED if is_sensitive_name(str(k), sensitive) else displayed(v, sensitive)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [displayed(item, sensitive) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        return str(value)
    return value
