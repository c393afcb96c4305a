"""What people are shown of a value: hidden characters made visible, right-to-left isolated."""

from __future__ import annotations

import re

import pytest

from signoff.assets import asset_dir
from signoff.core.display import (
    FIRST_STRONG_ISOLATE,
    HIDDEN_CLASS,
    NEWLINE_SIGN,
    POP_DIRECTIONAL_ISOLATE,
    isolated,
    shown,
    visible,
)

# One or more of every kind of character a font draws as nothing, or as something else.
HIDDEN = {
    "\u202e": "RIGHT-TO-LEFT OVERRIDE",
    "\u202a": "LEFT-TO-RIGHT EMBEDDING",
    "\u202c": "POP DIRECTIONAL FORMATTING",
    "\u2066": "LEFT-TO-RIGHT ISOLATE",
    "\u2067": "RIGHT-TO-LEFT ISOLATE",
    "\u2068": "FIRST STRONG ISOLATE",
    "\u2069": "POP DIRECTIONAL ISOLATE",
    "\u200e": "LEFT-TO-RIGHT MARK",
    "\u200f": "RIGHT-TO-LEFT MARK",
    "\u061c": "ARABIC LETTER MARK",
    "\u200b": "ZERO WIDTH SPACE",
    "\u200c": "ZERO WIDTH NON-JOINER",
    "\u200d": "ZERO WIDTH JOINER",
    "\u2060": "WORD JOINER",
    "\ufeff": "BYTE ORDER MARK",
    "\u00ad": "SOFT HYPHEN",
    "\U000e0041": "TAG LATIN CAPITAL LETTER A",
    "\U000e007f": "CANCEL TAG",
    "\u2028": "LINE SEPARATOR",
    "\u2029": "PARAGRAPH SEPARATOR",
    "\x00": "NULL",
    "\t": "TAB",
    "\r": "CARRIAGE RETURN",
    "\x1b": "ESCAPE",
    "\x7f": "DELETE",
    "\x85": "NEXT LINE",
    "\ufe0f": "VARIATION SELECTOR-16",
    "\U000e0100": "VARIATION SELECTOR-17",
    "\u3164": "HANGUL FILLER",
    "\u180e": "MONGOLIAN VOWEL SEPARATOR",
}


@pytest.mark.parametrize("char", list(HIDDEN), ids=list(HIDDEN.values()))
def test_each_hidden_character_is_shown_as_its_code_point(char: str) -> None:
    code = f"{ord(char):04X}"
    assert visible(f"a{char}b") == f"a⟨U+{code}⟩b"


def test_a_newline_is_shown_as_a_sign_so_a_value_keeps_to_one_line() -> None:
    assert visible("DE89 3704\n• amount: 1") == f"DE89 3704{NEWLINE_SIGN}• amount: 1"
    assert visible("a\r\nb") == f"a⟨U+000D⟩{NEWLINE_SIGN}b"


def test_an_iban_written_backwards_is_shown_in_the_order_it_runs() -> None:
    # Drawn as is, the override shows "DE89 3704 0044 0532 0130 00" read from the right.
    hostile = "\u202e00 0130 0532 0440 4073 98ED"
    assert visible(hostile) == "⟨U+202E⟩00 0130 0532 0440 4073 98ED"


@pytest.mark.parametrize(
    "text",
    [
        "plain ASCII <b>&amp;</b> *bold* _it_ ~s~ `code`",
        "Zoë, Ångström, naïve café",
        "Grüße aus Köln — “quoted” · ellipsis…",
        "東京 서울 Москва",
        "שלום עולם مرحبا",
        "emoji 🙂 without a selector",
        "no-break\u00a0space and ideographic\u3000space",
        "",
    ],
)
def test_text_without_hidden_characters_is_left_as_it_is(text: str) -> None:
    assert visible(text) == text


def test_right_to_left_text_is_isolated_and_left_to_right_is_not() -> None:
    for rtl in ("שלום", "مرحبا", "١٢٣", "IBAN שלום 12"):
        assert isolated(rtl) == f"{FIRST_STRONG_ISOLATE}{rtl}{POP_DIRECTIONAL_ISOLATE}"
    for ltr in ("DE89 3704", "123.45", "Zoë", ""):
        assert isolated(ltr) == ltr


def test_shown_makes_visible_then_isolates_so_the_isolate_is_the_only_one() -> None:
    shalom = "\u05e9\u05dc\u05d5\u05dd"
    text = shown(f"\u2069{shalom}\u2066")
    assert text == f"{FIRST_STRONG_ISOLATE}⟨U+2069⟩{shalom}⟨U+2066⟩{POP_DIRECTIONAL_ISOLATE}"
    assert text.count(FIRST_STRONG_ISOLATE) == text.count(POP_DIRECTIONAL_ISOLATE) == 1


def widget_rule() -> tuple[str, str]:
    """The widget's character class and newline sign, as written in widget.js."""
    source = (asset_dir("widget") / "widget.js").read_text()
    hidden = re.search(r"const HIDDEN = /(\[.*?\])/gu;", source)
    sign = re.search(r'const NEWLINE_SIGN = "(.)";', source)
    assert hidden and sign, "widget.js no longer declares HIDDEN and NEWLINE_SIGN"
    return hidden.group(1), sign.group(1)


def test_the_widget_hides_nothing_the_server_shows_and_shows_it_alike() -> None:
    assert widget_rule() == (HIDDEN_CLASS, NEWLINE_SIGN)
