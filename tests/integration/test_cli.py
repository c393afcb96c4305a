"""The ``signoff`` command: start-up refuses bad settings, naming them; tokens; the wheel."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from signoff.audit.migrate import head
from signoff.cli import main
from signoff.core.tokens import load_user_token
from tests.llm_standin import MODEL, StandInModel, answer
from tests.support import ORIGIN, SECRET, Widget, free_port

ROOT = Path(__file__).resolve().parents[2]
SIGNOFF = [sys.executable, "-m", "signoff.cli"]
UNREACHABLE = "postgresql://signoff:hunter2@127.0.0.1:1/audit"  # nothing listens on port 1


def run(
    args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    return subprocess.run(
        SIGNOFF + args, env={**clean, **env}, cwd=cwd, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "SIGNOFF_SECRET"),
        ({"SIGNOFF_SECRET": "short"}, "SIGNOFF_SECRET"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_STORE": "mongo://x"}, "SIGNOFF_STORE"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_AUDIT": "oracle://x"}, "SIGNOFF_AUDIT"),
        # A database that does not answer stops start-up too, before the port opens.
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_AUDIT": UNREACHABLE}, "SIGNOFF_AUDIT"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_SESSION_TTL": "soon"}, "SIGNOFF_SESSION_TTL"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_SESSION_TTL": "-1"}, "SIGNOFF_SESSION_TTL"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_LLM_BASE_URL": "localhost:1/v1"}, "LLM_BASE_URL"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_LLM_BASE_URL": "http://h/v1"}, "SIGNOFF_LLM_MODEL"),
    ],
)
def test_bad_settings_stop_serve_naming_the_setting(
    env: dict[str, str], named: str, tmp_path: Path
) -> None:
    (tmp_path / "shop.py").write_text("from signoff.bots.demo import demo_app\napp = demo_app()\n")
    result = run(["serve", "shop:app", "--port", "1"], env, cwd=tmp_path)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_settings_stop_the_demo_too(tmp_path: Path) -> None:
    result = run(["demo", "--port", "1"], {"SIGNOFF_STORE": "nope://"}, cwd=tmp_path)
    assert (result.returncode, "SIGNOFF_STORE" in result.stderr) == (2, True)
    config = tmp_path / "bad.toml"
    config.write_text('[sites.demo]\norigins = ["not an origin"]\n')
    result = run(["demo", "--config", str(config)], {}, cwd=tmp_path)
    assert (result.returncode, "sites.demo.origins" in result.stderr) == (2, True)


async def test_the_demo_runs_on_a_model_when_its_base_url_is_set(
    model: StandInModel, tmp_path: Path
) -> None:
    model.then(answer("Hello from the model."))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")},
        "SIGNOFF_LLM_BASE_URL": model.base_url,
        "SIGNOFF_LLM_MODEL": MODEL,
    }
    server = await asyncio.create_subprocess_exec(
        *SIGNOFF,
        "demo",
        "--port",
        str(port),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        started = await asyncio.wait_for(server.stdout.readline(), 10)
        assert f"(model {MODEL})" in started.decode()
        for _ in range(100):
            try:
                socket = await websockets.connect(f"ws://127.0.0.1:{port}/ws", origin=ORIGIN)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the demo did not accept a WebSocket")
        async with socket:
            visitor = Widget(socket)
            await visitor.hello()
            await visitor.say("hi")
            await visitor.bot_says("Hello from the model.")
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
    assert model.requests[0].messages[-1] == {"role": "user", "content": "hi"}


def test_serve_refuses_something_that_is_not_a_signoff_app(tmp_path: Path) -> None:
    result = run(["serve", "signoff.config:Settings"], {"SIGNOFF_SECRET": SECRET}, cwd=tmp_path)
    assert result.returncode == 2
    assert "is not a Signoff object" in result.stderr


def test_token_signs_a_user_token_the_server_accepts(tmp_path: Path) -> None:
    result = run(["token", "alice", "--ttl", "60", "--site", "shop"], {"SIGNOFF_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    assert load_user_token(SECRET, result.stdout.strip(), "shop") == "alice"


@pytest.fixture
def db(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``signoff db ...`` run in this process: (exit status, stdout, stderr)."""
    for name in [k for k in os.environ if k.startswith("SIGNOFF_")]:
        monkeypatch.delenv(name)

    def db(*args: str, audit: str | None = None) -> tuple[int, str, str]:
        if audit is not None:
            monkeypatch.setenv("SIGNOFF_AUDIT", audit)
        status = main(["db", *args])
        out, err = capsys.readouterr()
        return status, out, err

    return db


def test_db_upgrade_migrates_the_audit_database_without_a_secret(audit_url: str, db: Any) -> None:
    assert db("current", audit=audit_url) == (0, "audit database: revision none\n", "")
    newest = (0, f"audit database: revision {head()} (newest)\n", "")
    assert db("upgrade") == newest
    assert db("upgrade") == newest  # nothing left to do
    assert db("current") == newest


def test_db_reads_the_audit_url_from_the_config_file(tmp_path: Path, db: Any) -> None:
    config = tmp_path / "signoff.toml"
    config.write_text(f'audit = "sqlite:///{tmp_path}/from-config.db"\n')
    assert db("upgrade", "--config", str(config))[0] == 0
    assert (tmp_path / "from-config.db").exists()


def test_db_upgrade_of_an_unreachable_database_names_the_setting(db: Any) -> None:
    status, _, err = db("upgrade", audit=UNREACHABLE)
    assert status == 2
    assert err.startswith("signoff: SIGNOFF_AUDIT: cannot open or migrate")
    assert "hunter2" not in err


async def test_the_wheel_carries_widget_templates_and_static(tmp_path: Path) -> None:
    """Build the wheel, install it into a fresh venv, and serve from outside the checkout."""
    wheels = tmp_path / "wheels"
    build = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    [wheel] = wheels.glob("signoff-*.whl")
    venv = tmp_path / "venv"
    await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = await asyncio.to_thread(
        subprocess.run,
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    # Dependencies come from the test environment; its editable signoff must not.
    site = Path(sysconfig.get_paths()["purelib"])
    fresh_site = next((venv / "lib").glob("python*/site-packages"))
    (fresh_site / "deps.pth").write_text(str(site) + "\n")
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        str(venv / "bin" / "signoff"),
        "demo",
        "--port",
        str(port),
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(100):
                try:
                    widget = await http.get("/widget.js")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert widget.status_code == 200
            assert "Signoff" in widget.text
            assert (await http.get("/widget.css")).status_code == 200
            demo = await http.get("/demo")
            assert 'data-site="demo"' in demo.text
            assert (await http.get("/static/demo.css")).status_code == 200
        where = await asyncio.to_thread(
            subprocess.run,
            [str(python), "-c", "import signoff.assets as a; print(a.asset_dir('widget'))"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert str(fresh_site) in where.stdout
        # The migrations are in the wheel too.
        migrated = await asyncio.to_thread(
            subprocess.run,
            [str(venv / "bin" / "signoff"), "db", "upgrade"],
            env={**os.environ, "SIGNOFF_AUDIT": f"sqlite:///{tmp_path}/wheel-audit.db"},
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert migrated.returncode == 0, migrated.stderr
        assert f"revision {head()} (newest)" in migrated.stdout
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
