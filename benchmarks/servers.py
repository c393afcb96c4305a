"""How the benchmarks start ``signoff serve``: its command line and environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def signoff_command(port: int) -> list[str]:
    """``signoff serve`` of the echo app on ``port`` of the loopback address."""
    return [
        sys.executable,
        "-m",
        "signoff.cli",
        "serve",
        "benchmarks.echo_app:app",
        "--app-dir",
        str(ROOT),
        "--host",
        HOST,
        "--port",
        str(port),
    ]


def environment(**settings: str) -> dict[str, str]:
    """This process's environment without its SIGNOFF_ settings, plus ``settings`` as
    SIGNOFF_<NAME> variables, and the project importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNOFF_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update({f"SIGNOFF_{k.upper()}": v for k, v in settings.items()})
    return env


def wait_listening(
    process: subprocess.Popen[bytes],
    port: int,
    log: Path,
    timeout: float,
    exited: Callable[[str], None] | None = None,
) -> None:
    """Return once ``port`` accepts connections. If the server exits first, ``exited``
    may raise an error of its own from its log's text; else a RuntimeError shows it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            if exited is not None:
                exited(text)
            raise RuntimeError(f"server exited with {process.returncode}:\n{text}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s")
