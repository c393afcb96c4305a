"""Print pip constraints that pin each of signoff's direct dependencies to its declared
lower bound, for the base install and the extras named: what `make floors` installs
(pip's counterpart of ``uv pip install --resolution lowest-direct``).

Run: .venv/bin/python tools/floors.py postgres slack llm > floors.txt
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def lowest(requirement: Requirement) -> str:
    """``name==floor``, with the requirement's marker; every dependency declares a floor."""
    floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    if len(floors) != 1:
        raise SystemExit(f"pyproject.toml: {requirement} should declare one lower bound (>=)")
    marker = f"; {requirement.marker}" if requirement.marker else ""
    return f"{requirement.name}=={floors[0]}{marker}"


def constraints(extras: list[str]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    # An extra may raise a base dependency's floor (its framework needs a newer one): the
    # higher floor holds where the extra is installed.
    highest: dict[str, Requirement] = {}
    for requirement in (Requirement(text) for text in declared):
        if requirement.name == project["name"]:
            continue
        known = highest.get(requirement.name)
        if known is None or _floor(requirement) > _floor(known):
            highest[requirement.name] = requirement
    return [lowest(r) for r in highest.values()]


def _floor(requirement: Requirement) -> Version:
    return max(Version(s.version) for s in requirement.specifier if s.operator == ">=")


if __name__ == "__main__":
    print("\n".join(constraints(sys.argv[1:])))
