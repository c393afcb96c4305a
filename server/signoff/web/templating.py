"""The Jinja2 environment of the dashboard and the demo page.

Autoescaped, and every value a template prints shows its hidden characters as
core.display does (``⟨U+202E⟩``, ``↵``): an argument, a reason or a chat message cannot
hide part of itself, run backwards or forge lines on a teammate's page, whichever template
prints it. Two kinds of text are printed as they are: HTML the dashboard built itself, and
a card's text or a call's effect (the ``card_text`` filter), which the message template
already composed with its values made visible, and whose line breaks and isolates are the
template's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from signoff.core.display import visible


def printed(value: Any) -> Any:
    """What ``{{ ... }}`` prints for a value, before autoescaping."""
    if hasattr(value, "__html__"):  # built by the dashboard, escaped as it was built
        return value
    return visible(str(value))


def card_text(text: str) -> Markup:
    """A card's text or a call's effect, as the message template composed it."""
    return escape(text)


def page_templates(folder: Path) -> Environment:
    templates = Environment(
        loader=FileSystemLoader(folder), autoescape=select_autoescape(), finalize=printed
    )
    templates.filters["card_text"] = card_text
    return templates
