"""Where the widget, templates and static files are: in the wheel, or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def asset_dir(name: str) -> Path:
    """``widget``, ``templates`` or ``static``."""
    for candidate in (_PACKAGE / "_assets" / name, _PACKAGE.parents[1] / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"signoff is installed without its {name}/ folder")
