"""The ``signoff`` command: start-up refuses bad settings, naming them; tokens; the wheel."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

import signoff
from signoff.accounts import Accounts, parse_key_id
from signoff.audit import open_audit
from signoff.audit.migrate import head
from signoff.cli import main
from signoff.core.tokens import load_user_token
from signoff.demo import demo_app
from tests.llm_standin import MODEL, StandInModel, answer
from tests.services import redis_prefix, redis_store_url
from tests.support import ORIGIN, SECRET, Widget, free_port, running, settings, widget

ROOT = Path(__file__).resolve().parents[2]
SIGNOFF = [sys.executable, "-m", "signoff.cli"]
UNREACHABLE = "postgresql://signoff:hunter2@127.0.0.1:1/audit"  # nothing listens on port 1


def write_shop(folder: Path) -> None:
    """A shop.py whose ``app`` is the demo shop, for ``signoff serve shop:app``."""
    (folder / "shop.py").write_text("from signoff.demo import demo_app\napp = demo_app()\n")


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
        # And so does a Redis that does not answer.
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_STORE": "redis://127.0.0.1:1/0"}, "SIGNOFF_STORE"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_SESSION_TTL": "soon"}, "SIGNOFF_SESSION_TTL"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_SESSION_TTL": "-1"}, "SIGNOFF_SESSION_TTL"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_LLM_BASE_URL": "localhost:1/v1"}, "LLM_BASE_URL"),
        ({"SIGNOFF_SECRET": SECRET, "SIGNOFF_LLM_BASE_URL": "http://h/v1"}, "SIGNOFF_LLM_MODEL"),
    ],
)
def test_bad_settings_stop_serve_naming_the_setting(
    env: dict[str, str], named: str, tmp_path: Path
) -> None:
    write_shop(tmp_path)
    result = run(["serve", "shop:app", "--port", "1"], env, cwd=tmp_path)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_bad_ports_are_answered_before_anything_starts(tmp_path: Path) -> None:
    version = run(["--version"], {})
    assert (version.returncode, version.stdout) == (0, f"signoff {signoff.__version__}\n")
    for args, env, says in [
        (["--port", "99999"], {}, "99999 is not a TCP port (1-65535)"),
        (["--port", "0"], {}, "0 is not a TCP port"),
        (["--port", "http"], {}, "not a port number: 'http'"),
        ([], {"SIGNOFF_PORT": "70000"}, "SIGNOFF_PORT: 70000 is not a TCP port"),
        ([], {"PORT": "-5"}, "PORT: -5 is not a TCP port"),
    ]:
        refused = run(["demo", *args], env, cwd=tmp_path)
        assert refused.returncode == 2
        assert says in refused.stderr, refused.stderr
    write_shop(tmp_path)
    workers = run(["serve", "shop:app", "--workers", "2"], {"SIGNOFF_SECRET": SECRET}, tmp_path)
    assert workers.returncode == 2
    assert "--workers 2: the memory store is one process's own" in workers.stderr


async def served_lines(args: list[str], env: dict[str, str], cwd: Path, port: int) -> list[str]:
    """Start ``signoff ...`` listening on ``port``, wait for its /healthz, stop it: what it
    logged meanwhile."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    server = await asyncio.create_subprocess_exec(
        *SIGNOFF, *args, env={**clean, **env}, cwd=cwd, stderr=subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(200):
                try:
                    health = await http.get(f"http://127.0.0.1:{port}/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("it never answered")
            assert health.json() == {"status": "ok"}
    finally:
        server.terminate()
        _, err = await asyncio.wait_for(server.communicate(), 20)
    return err.decode().splitlines()


async def test_the_port_comes_from_the_environment_and_logs_can_be_json_lines(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {"SIGNOFF_SECRET": SECRET, "PORT": str(free_port()), "SIGNOFF_PORT": str(port)}
    lines = await served_lines(["demo", "--log-format", "json"], env, tmp_path, port)
    entries = [json.loads(line) for line in lines]
    assert any(e["logger"] == "uvicorn.error" and "startup" in e["message"] for e in entries)
    for entry in entries:
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
        assert entry["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}


async def test_several_workers_serve_one_app_on_a_shared_store(tmp_path: Path) -> None:
    write_shop(tmp_path)
    port = free_port()
    async with redis_prefix() as prefix:
        env = {"SIGNOFF_SECRET": SECRET, "SIGNOFF_STORE": redis_store_url(prefix)}
        args = ["serve", "shop:app", "--workers", "2", "--port", str(port)]
        lines = await served_lines(args, env, tmp_path, port)
    started = [line for line in lines if "Started server process" in line]
    assert len(started) == 2  # two processes, each its own app
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines)


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
        try:
            visitor = Widget(socket)
            await visitor.hello()
            await visitor.say("hi")
            await visitor.bot_says("Hello from the model.")
        finally:
            await socket.close()
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


@pytest.mark.parametrize("ttl", ["nan", "inf", "-inf", "0", "3601", "1e308"])
def test_token_refuses_a_ttl_that_is_not_a_short_time(
    ttl: str, command: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNOFF_SECRET", SECRET)
    status, out, err = command("token", "alice", f"--ttl={ttl}")
    assert (status, out) == (2, "")
    assert err.startswith("signoff: ttl must be a number of seconds above 0 and at most 3600")


class Terminal(io.StringIO):
    """Standard input that is a terminal, where signoff may ask for a password."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``signoff ...`` run in this process: (exit status, stdout, stderr)."""
    for name in [k for k in os.environ if k.startswith("SIGNOFF_")]:
        monkeypatch.delenv(name)

    def command(
        *args: str, audit: str | None = None, stdin: str = "", terminal: bool = False
    ) -> tuple[int, str, str]:
        if audit is not None:
            monkeypatch.setenv("SIGNOFF_AUDIT", audit)
        monkeypatch.setattr(sys, "stdin", (Terminal if terminal else io.StringIO)(stdin))
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return command


@pytest.fixture
def db(command: Any) -> Any:
    """``signoff db ...``: (exit status, stdout, stderr)."""
    return functools.partial(command, "db")


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


PASSWORD = "correct horse battery"


def accounts_of(audit_url: str, use: Callable[[Accounts], Awaitable[Any]]) -> Any:
    """What ``use`` makes of the accounts in the audit database at ``audit_url``."""

    async def run() -> Any:
        audit = open_audit(audit_url, SECRET)
        try:
            return await use(Accounts(audit.engine))
        finally:
            await audit.close()

    return asyncio.run(run())


def test_users_create_migrates_first_and_lists_teammates(audit_url: str, command: Any) -> None:
    created = command(
        "users",
        "create",
        "lena",
        "--role",
        "support-lead",
        "--role",
        "finance",
        "--role",
        "finance",
        "--slack-user",
        "U012AB3CD",
        "--password-stdin",
        audit=audit_url,
        stdin=PASSWORD + "\n",
    )
    assert created == (0, "teammate lena created (roles: finance, support-lead)\n", "")
    status, out, _ = command("users", "list")
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["NAME", "ROLES", "SLACK", "SITES", "BY", "CREATED", "DISABLED"]
    # Made on the command line: by the operator, counting as herself for four eyes.
    assert row.split()[:5] == ["lena", "finance,support-lead", "U012AB3CD", "*", "-"]
    assert PASSWORD not in out
    lena = accounts_of(audit_url, lambda accounts: accounts.login("lena", PASSWORD))
    assert lena.roles == {"support-lead", "finance"}


def test_users_create_without_a_terminal_says_to_pipe_the_password(
    tmp_path: Path, command: Any
) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    code, out, err = command("users", "create", "omar", "--role", "support-lead", audit=audit)
    assert (code, out) == (2, "")
    assert err == (
        "signoff: no terminal to ask for the password on: give it on stdin with --password-stdin\n"
    )


def test_users_create_asks_for_the_password_twice(
    tmp_path: Path, command: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    answers = iter([PASSWORD, PASSWORD + "!", PASSWORD, PASSWORD])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    create = ("users", "create", "omar", "--role", "support-lead")
    mismatch = command(*create, audit=audit, terminal=True)
    assert mismatch == (2, "", "signoff: the passwords do not match\n")
    assert command(*create, terminal=True)[0] == 0
    assert accounts_of(audit, lambda accounts: accounts.login("omar", PASSWORD)) is not None


@pytest.mark.parametrize(
    ("args", "password", "says"),
    [
        (["lena", "--role", "finance"], PASSWORD, "already exists"),
        (["omar", "--role", "Support Lead"], PASSWORD, "role 'Support Lead'"),
        (["omar", "--role", "finance", "--role", "x y"], PASSWORD, "role 'x y'"),
        (["bad name", "--role", "finance"], PASSWORD, "name 'bad name'"),
        (["omar", "--role", "finance"], "short", "at least 10 characters"),
        (["omar", "--role", "finance", "--slack-user", "lena@slack"], PASSWORD, "Slack user id"),
        # A pattern's $ also matches before a final line break: names are matched whole.
        (["omar\n", "--role", "finance"], PASSWORD, "name 'omar\\n'"),
        (["omar", "--role", "finance\n"], PASSWORD, "role 'finance\\n'"),
        (["omar", "--role", "finance", "--site", "shop\n"], PASSWORD, "site 'shop\\n'"),
        (["omar", "--role", "finance", "--slack-user", "U0OMAR\n"], PASSWORD, "Slack user id"),
    ],
)
def test_users_create_refuses_bad_input_and_creates_nothing(
    args: list[str], password: str, says: str, tmp_path: Path, command: Any
) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    lena = ["lena", "--role", "support-lead", "--password-stdin"]
    assert command("users", "create", *lena, audit=audit, stdin=PASSWORD)[0] == 0
    status, out, err = command("users", "create", *args, "--password-stdin", stdin=password)
    assert (status, out) == (2, "")
    assert says in err
    assert err.startswith("signoff: ")
    names = accounts_of(audit, lambda accounts: accounts.list_teammates())
    assert [(t.name, t.roles) for t in names] == [("lena", ["support-lead"])]


def test_users_get_new_passwords_and_are_disabled_and_enabled(tmp_path: Path, command: Any) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    lena = ["lena", "--role", "support-lead", "--password-stdin"]
    assert command("users", "create", *lena, audit=audit, stdin=PASSWORD)[0] == 0
    new = "another long passphrase"
    changed = command("users", "password", "lena", "--password-stdin", stdin=new)
    assert changed[0] == 0 and "logins have ended" in changed[1]
    assert accounts_of(audit, lambda accounts: accounts.login("lena", PASSWORD)) is None
    assert accounts_of(audit, lambda accounts: accounts.login("lena", new)) is not None

    assert command("users", "disable", "lena") == (0, "teammate lena disabled\n", "")
    assert accounts_of(audit, lambda accounts: accounts.login("lena", new)) is None
    assert command("users", "list")[1].splitlines()[1].split()[-1] == "yes"
    assert command("users", "enable", "lena") == (0, "teammate lena enabled\n", "")
    assert accounts_of(audit, lambda accounts: accounts.login("lena", new)) is not None

    for verb in ("disable", "enable"):
        assert command("users", verb, "nobody") == (2, "", "signoff: no teammate named 'nobody'\n")
    short = command("users", "password", "lena", "--password-stdin", stdin="short")
    assert short[0] == 2 and "at least 10 characters" in short[2]


def test_keys_are_shown_once_listed_without_secrets_and_revoked(
    audit_url: str, command: Any
) -> None:
    status, out, err = command(
        "keys", "create", "refund-desk", "--role", "support-lead", audit=audit_url
    )
    assert status == 0
    key = out.strip()
    assert key.startswith("sok_")
    assert "cannot be shown again" in err
    account = accounts_of(audit_url, lambda accounts: accounts.authenticate_key(key))
    assert (account.name, account.roles) == ("key:refund-desk", {"support-lead"})

    status, out, _ = command("keys", "list")
    key_id = parse_key_id(key)
    assert status == 0
    assert key_id in out and "refund-desk" in out
    assert key.split("_", 2)[2] not in out  # the secret is not kept, let alone shown

    assert command("keys", "revoke", key_id) == (0, f"key {key_id} revoked\n", "")
    assert accounts_of(audit_url, lambda accounts: accounts.authenticate_key(key)) is None
    again = command("keys", "revoke", key_id)
    assert again == (2, "", f"signoff: no live key with the id {key_id!r}\n")
    [row] = command("keys", "list")[1].splitlines()[1:]
    assert row.split()[-1] != "-"  # the revocation time


def test_keys_and_teammates_can_be_scoped_to_sites(tmp_path: Path, command: Any) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    made = command(
        "keys", "create", "shop-backend", "--role", "host", "--site", "shop", audit=audit
    )
    assert made[0] == 0
    account = accounts_of(audit, lambda accounts: accounts.authenticate_key(made[1].strip()))
    assert (account.sites, account.covers("shop"), account.covers("blog")) == (
        {"shop"},
        True,
        False,
    )
    header, row = command("keys", "list")[1].splitlines()
    assert header.split()[3] == "SITES" and row.split()[3] == "shop"
    bad = command("keys", "create", "x", "--role", "host", "--site", "Not A Site")
    assert bad[0] == 2 and "site 'Not A Site'" in bad[2]
    bo = ["bo", "--role", "support-lead", "--site", "blog", "--password-stdin"]
    assert command("users", "create", *bo, stdin=PASSWORD)[0] == 0
    teammate = accounts_of(audit, lambda accounts: accounts.login("bo", PASSWORD))
    assert teammate.sites == {"blog"}
    assert command("users", "list")[1].splitlines()[1].split()[3] == "blog"


def test_names_and_user_ids_with_control_characters_are_refused(
    tmp_path: Path, command: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    status, out, err = command("keys", "create", "desk\x1b[2J", "--role", "host", audit=audit)
    assert (status, out) == (2, "")
    assert "key name 'desk\\x1b[2J': use letters, digits" in err  # shown escaped, not run
    assert accounts_of(audit, lambda accounts: accounts.list_keys()) == []
    monkeypatch.setenv("SIGNOFF_SECRET", SECRET)
    token = command("token", "al\x07ice")
    assert token[0] == 2 and "user id: control characters such as '\\x07'" in token[2]


def test_keys_create_refuses_bad_roles(tmp_path: Path, command: Any) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    status, out, err = command("keys", "create", "ci", "--role", "Admin!", audit=audit)
    assert (status, out) == (2, "")
    assert "role 'Admin!'" in err
    without_role = subprocess.run(
        [*SIGNOFF, "keys", "create", "ci"], capture_output=True, text=True, timeout=30
    )
    assert without_role.returncode == 2
    assert "--role" in without_role.stderr
    assert accounts_of(audit, lambda accounts: accounts.list_keys()) == []


async def test_a_key_made_on_the_command_line_decides_over_the_api(tmp_path: Path) -> None:
    audit = f"sqlite:///{tmp_path}/audit.db"
    made = await asyncio.to_thread(
        run, ["keys", "create", "refund-desk", "--role", "support-lead"], {"SIGNOFF_AUDIT": audit}
    )
    assert made.returncode == 0, made.stderr
    async with (
        running(demo_app(), settings(tmp_path, audit=audit)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
        widget(server) as w,
    ):
        await w.hello()
        await w.say("refund 250 on order 1002")
        card = await w.card("waiting")
        answer = await http.post(
            f"/api/v1/cards/{card['card_id']}/resume",
            json={"decision": "approve"},
            headers={"Authorization": f"Bearer {made.stdout.strip()}"},
        )
        assert answer.json()["card"]["decided_by"] == "teammate:key:refund-desk"
        await w.bot_says("Refunded $250.00")


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
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    # Its licence, and the marker that tells type checkers signoff is typed.
    assert "signoff/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert b"License-Expression: Apache-2.0" in metadata
    assert b"Provides-Extra: postgres" in metadata
    # The index's page: how to start, and no link that only works inside the repository.
    assert b"pip install signoff\nsignoff demo" in metadata
    assert b"](docs/" not in metadata
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


async def test_reload_serves_the_app_from_a_reloading_process(tmp_path: Path) -> None:
    write_shop(tmp_path)
    port = free_port()
    args = ["serve", "shop:app", "--reload", "--port", str(port)]
    lines = await served_lines(args, {"SIGNOFF_SECRET": SECRET}, tmp_path, port)
    assert any("Started reloader process" in line for line in lines), lines
