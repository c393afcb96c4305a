"""Message templates: sandboxed, plain text, with money and plural filters."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from signoff.core.templates import (
    MessageTemplate,
    TemplateError,
    generated_message,
    humanise,
    money,
    plural,
)


def render(source: str, **args: Any) -> str:
    return MessageTemplate(source, list(args)).render(args)


def test_renders_args_and_strips_whitespace() -> None:
    assert render("  Cancel order #{{ order_id }}?\n", order_id=1001) == "Cancel order #1001?"


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ x.__class__ }}",
        "{{ x.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ lipsum.__globals__ }}",
    ],
)
def test_sandbox_refuses_dunder_access(source: str) -> None:
    try:
        template = MessageTemplate(source, ["x"])
    except TemplateError:
        return  # refused at registration
    with pytest.raises(SecurityError):
        template.render({"x": "text"})


def test_sandbox_is_immutable() -> None:
    template = MessageTemplate("{{ items.append(4) }}{{ items }}", ["items"])
    items = [1, 2, 3]
    with pytest.raises(SecurityError):
        template.render({"items": items})
    assert items == [1, 2, 3]


def test_markup_in_args_is_kept_as_plain_text() -> None:
    payload = "<img src=x onerror=alert(1)>"
    text = render("Hello {{ name }}", name=payload)
    assert text == f"Hello {payload}"
    assert "&lt;" not in text


def test_printed_values_show_their_hidden_characters_and_keep_to_their_line() -> None:
    text = render(
        "Pay {{ amount|money }} to {{ iban }}.\nNote: {{ note }}",
        amount=20,
        iban="\u202e00 0130 0532 0440 4073 98ED",
        note="thanks\n• amount: 1\u200b",
    )
    # The template's own line break stays; the values' line break and controls do not.
    assert text == (
        "Pay $20.00 to ⟨U+202E⟩00 0130 0532 0440 4073 98ED.\nNote: thanks↵• amount: 1⟨U+200B⟩"
    )


def test_printed_right_to_left_values_are_isolated_from_their_neighbours() -> None:
    text = render("Send {{ name }} {{ amount }}", name="שלום", amount=20)
    assert text == "Send \u2068\u05e9\u05dc\u05d5\u05dd\u2069 20"
    # Whatever filter a value went through: what is printed is what is shown.
    assert render("{{ name|upper }}", name="a\u2066b") == "A⟨U+2066⟩B"
    assert render("{{ items }}", items=["a\nb"]) == "['a\\nb']"


def test_template_syntax_in_args_is_not_executed() -> None:
    text = render("Note: {{ note }}", note="{{ 7 * 7 }} {% for x in y %}")
    assert text == "Note: {{ 7 * 7 }} {% for x in y %}"


def test_unknown_parameter_is_rejected_at_compile_time() -> None:
    with pytest.raises(TemplateError, match="customer"):
        MessageTemplate("{{ order_id }} for {{ customer }}", ["order_id"])


def test_syntax_error_is_rejected_at_compile_time() -> None:
    with pytest.raises(TemplateError, match="line"):
        MessageTemplate("{% if x %}", ["x"])


def test_missing_arg_at_render_is_an_error_not_blank() -> None:
    template = MessageTemplate("Refund {{ amount }}", ["amount"])
    with pytest.raises(UndefinedError):
        template.render({})


def test_source_is_kept() -> None:
    assert MessageTemplate("Hi {{ x }}", ["x"]).source == "Hi {{ x }}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (89.5, "$89.50"),
        (1234.5, "$1,234.50"),
        (0, "$0.00"),
        (-5, "-$5.00"),
        (-1234.567, "-$1,234.57"),
        (1234567.891, "$1,234,567.89"),
        (2.675, "$2.68"),
        (0.005, "$0.01"),
        (-0.001, "$0.00"),
        ("19.9", "$19.90"),
    ],
)
def test_money(value: Any, expected: str) -> None:
    assert money(value) == expected


def test_money_currency_and_filter() -> None:
    assert money(3, "€") == "€3.00"
    assert render("{{ total|money }}", total=1234.5) == "$1,234.50"
    assert render("{{ total|money('£') }}", total=-2) == "-£2.00"


@pytest.mark.parametrize(
    ("count", "expected"),
    [(0, "0 orders"), (1, "1 order"), (2, "2 orders")],
)
def test_plural(count: int, expected: str) -> None:
    assert plural(count, "order") == expected
    assert render("{{ n|plural('order') }}", n=count) == expected


def test_plural_with_irregular_form() -> None:
    assert plural(1, "child", "children") == "1 child"
    assert plural(3, "child", "children") == "3 children"
    assert render("{{ n|plural('entry', 'entries') }}", n=2) == "2 entries"


def test_humanise() -> None:
    assert humanise("cancel_order") == "Cancel order"
    assert humanise("delete-spam") == "Delete spam"
    assert humanise("__refund__") == "Refund"


def test_generated_message_renders_key_params() -> None:
    source = generated_message("Cancel order", "Cancels it.", ["order_id", "customer"])
    text = MessageTemplate(source, ["order_id", "customer"]).render(
        {"order_id": 1001, "customer": "Ada"}
    )
    assert text == "Cancel order: order_id 1001, customer Ada?\nCancels it."


def test_generated_message_without_params_or_description() -> None:
    assert MessageTemplate(generated_message("Ping", "", []), []).render({}) == "Ping?"


def test_generated_message_keeps_braces_in_title_and_description_literal() -> None:
    source = generated_message("Set {x}", "Replaces {{ x }} and {# y #} {% raw %}.", [])
    assert MessageTemplate(source, []).render({}) == (
        "Set {x}?\nReplaces {{ x }} and {# y #} {% raw %}."
    )
