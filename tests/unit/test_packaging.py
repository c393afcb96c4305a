"""What ``import signoff`` costs, and what the optional extras leave out of it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from signoff.cli import main
from signoff.config import ConfigError, load_settings

# Loaded only when a feature that needs them is used: the audit database's libraries at
# start-up of a server or a command, the extras only when configured.
LOADED_WHEN_USED = (
    *("sqlalchemy", "alembic", "aiosqlite", "asyncpg", "openai", "slack_sdk"),
    "pydantic_ai",
    "mcp",
    "langgraph",
    "agents",
)


def modules_after(code: str) -> set[str]:
    found = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys; print(json.dumps(list(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(found.stdout.splitlines()[-1]))


def test_importing_signoff_loads_no_database_library_nor_extra() -> None:
    loaded = modules_after("import signoff\nfrom signoff import Signoff, team")
    assert not loaded & set(LOADED_WHEN_USED)


def test_the_audit_log_loads_when_asked_for() -> None:
    loaded = modules_after("from signoff.audit import AuditEntry, AuditStatus")
    assert "sqlalchemy" not in loaded
    loaded = modules_after("from signoff.audit import open_audit")
    assert {"sqlalchemy", "alembic"} <= loaded


# Each extra's modules, hidden as if it were not installed (None in sys.modules makes an
# import fail), and a setting that needs it.
NOT_INSTALLED = {
    "postgres": ["asyncpg"],
    "slack": ["slack_sdk", "aiohttp"],
    "llm": ["openai"],
    "pydantic-ai": ["pydantic_ai"],
    "mcp": ["mcp"],
    "langgraph": ["langgraph", "langchain_core"],
    "openai-agents": ["agents"],
}
SECRET = "x" * 40


def hide(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    # Its submodules too: one another test loaded would still import, parent or not.
    for module in NOT_INSTALLED[extra]:
        for loaded in [m for m in sys.modules if m.startswith(module + ".")]:
            monkeypatch.setitem(sys.modules, loaded, None)
        monkeypatch.setitem(sys.modules, module, None)


@pytest.mark.parametrize(
    ("extra", "env"),
    [
        ("llm", {"SIGNOFF_LLM_BASE_URL": "http://127.0.0.1:9/v1", "SIGNOFF_LLM_MODEL": "m"}),
        (
            "slack",
            {
                "SIGNOFF_SLACK_BOT_TOKEN": "xoxb-1",
                "SIGNOFF_SLACK_SIGNING_SECRET": "s",
                "SIGNOFF_SLACK_CHANNEL": "C1",
            },
        ),
    ],
)
def test_a_setting_whose_extra_is_missing_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, extra: str, env: dict[str, str]
) -> None:
    hide(monkeypatch, extra)
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"SIGNOFF_SECRET": SECRET, **env})
    assert str(refused.value).endswith(f"pip install 'signoff[{extra}]'")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "module"),
    [
        ("pydantic-ai", "pydantic_ai"),
        ("mcp", "mcp"),
        ("langgraph", "langgraph"),
        ("openai-agents", "openai_agents"),
    ],
)
def test_an_adapter_without_its_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, extra: str, module: str
) -> None:
    hide(monkeypatch, extra)
    monkeypatch.delitem(sys.modules, f"signoff.adapters.{module}", raising=False)
    with pytest.raises(ImportError) as refused:
        importlib.import_module(f"signoff.adapters.{module}")
    assert str(refused.value) == (
        f"signoff.adapters.{module} needs the {extra} extra, which is not installed: "
        f"pip install 'signoff[{extra}]'"
    )


def test_a_postgresql_audit_database_without_its_extra_is_one_line_from_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hide(monkeypatch, "postgres")
    monkeypatch.setenv("SIGNOFF_AUDIT", "postgresql://signoff@127.0.0.1:9/signoff")
    assert main(["db", "current"]) == 2
    assert capsys.readouterr().err == (
        "signoff: SIGNOFF_AUDIT=postgresql://… needs the postgres extra, which is not "
        "installed: pip install 'signoff[postgres]'\n"
    )


def test_the_base_install_serves_the_demo_without_any_extra(tmp_path: Path) -> None:
    # In a process of its own, so modules other tests loaded do not hide an import.
    hidden = [m for modules in NOT_INSTALLED.values() for m in modules]
    code = f"""
import sys
for name in {hidden!r}:
    sys.modules[name] = None
from starlette.testclient import TestClient
from signoff import load_settings
from signoff.demo import demo_app
settings = load_settings(env={{"SIGNOFF_SECRET": {SECRET!r},
                               "SIGNOFF_AUDIT": "sqlite:///{tmp_path / "audit.db"}"}})
with TestClient(demo_app().asgi(settings)) as client:
    assert client.get("/healthz").status_code == 200
    assert client.get("/dashboard/login").status_code == 200
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
