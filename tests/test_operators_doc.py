"""docs/operators.md works as written: every ``bash`` block runs, in order, in a fresh home.

A line ending in ``&`` is a long-running node: started in the background (its own process
group, output in a log) and stopped at the end. Every other command must exit 0; one that
depends on the network's progress (a metric that appears once a window closes, the model
the first window writes) is retried until it does, within ``RETRY_S``. Ports 9946, 8091, 9101
and 9102 are replaced with free ones and ``--subtensor.network devnet`` with that devnet's URL;
nothing else is changed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.ports import free_port
from protocol.retry import Backoff, Waiter
from tests.localnet_fixtures import CACHE

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "operators.md"
PORTS = ("9946", "8091", "9101", "9102")
RETRY_S = 90.0
COMMAND_TIMEOUT_S = 60.0


def doc_commands(text: str) -> list[str]:
    """The commands of the ``bash`` blocks: comments dropped, ``\\`` continuations joined."""
    commands: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.split(" # ")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line:
                commands.append(line)
    return commands


def localize(command: str, ports: dict[str, str]) -> str:
    for old, new in ports.items():
        command = re.sub(rf"\b{old}\b", new, command)
    return re.sub(r"--subtensor\.network devnet(?![:/\w])",
                  f"--subtensor.network devnet://127.0.0.1:{ports['9946']}", command)


def test_commands_are_extracted_in_order():
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    assert commands[0].startswith("swarmtrain devnet") and commands[0].endswith("&")
    assert any(c.startswith("swarmtrain export --hf") for c in commands)
    assert sum(c.endswith("&") for c in commands) == 4  # devnet, validator, two miners


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "SWARMTRAIN_CACHE": CACHE, "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # this venv's swarmtrain
    env["PYTHONPATH"] = str(ROOT)
    return env


def _in_process(command: str, home: Path) -> subprocess.CompletedProcess:
    """A plain ``swarmtrain ...`` line through the same entry point (``swarmtrain.cli.main``), in
    this process: the shell's only part in it, ``~``, is expanded the same way (HOME is the test's)."""
    import contextlib
    import io

    from swarmtrain.cli import main

    argv = [os.path.expanduser(a) if a.startswith("~") else a for a in shlex.split(command)[1:]]
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(home)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


def _run(command: str, home: Path, env: dict[str, str], retry: bool) -> subprocess.CompletedProcess:
    waiter = Waiter(RETRY_S if retry else 0, Backoff.every(1.0))
    plain = command.startswith("swarmtrain ") and not set("|;<>&$`*") & set(command)
    while True:
        if plain:
            out = _in_process(command, home)
        else:
            out = subprocess.run(["bash", "-c", command], cwd=home, env=env, capture_output=True, text=True,
                                 timeout=COMMAND_TIMEOUT_S)
        if out.returncode == 0 or not waiter.pause_sync():
            return out


def _progress_dependent(command: str) -> bool:
    """Commands whose success needs the network to have run a while (retried, not failed)."""
    return command.startswith(("curl", "swarmtrain export"))


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):  # miners, validator, then the chain
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_the_walkthrough_runs_as_written(tmp_path, monkeypatch):
    if sys.platform != "linux":
        pytest.skip("the walkthrough test uses Linux process groups")
    home = tmp_path / "home"
    home.mkdir()
    env = _env(home)
    monkeypatch.setenv("HOME", str(home))  # for the commands run in this process
    monkeypatch.setenv("SWARMTRAIN_CACHE", CACHE)
    ports = {p: str(free_port()) for p in PORTS}
    procs: list[subprocess.Popen] = []
    outputs: dict[str, str] = {}
    try:
        for i, command in enumerate(localize(c, ports) for c in doc_commands(DOC.read_text(encoding="utf-8"))):
            if command.endswith("&"):
                log = open(tmp_path / f"bg{i}.log", "wb")  # noqa: SIM115 - closed with the process
                procs.append(subprocess.Popen(["bash", "-c", f"exec {command[:-1]}"], cwd=home, env=env,
                                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                if command.startswith("swarmtrain devnet"):
                    _wait_for_port(int(ports["9946"]))
                continue
            out = _run(command, home, env, retry=_progress_dependent(command))
            dead = [p.args for p in procs if p.poll() is not None]
            assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}\nexited: {dead}"
            outputs[command.split(" --")[0] + (" --json" if "--json" in command else "")] = out.stdout
    finally:
        _stop(procs)
    status = json.loads(outputs["swarmtrain status --json"])
    [validator] = status["validators"]
    rows = {m["uid"]: m for m in validator["status"]["miners"]}
    assert rows[1]["last_submission"]["outcome"] == "accepted"  # miner1 (uid 1) is scored: the curl waited for it
    assert (home / "model-hf" / "config.json").is_file() and (home / "model-hf" / "tokenizer.json").is_file()


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    import socket

    waiter = Waiter(timeout, Backoff.every(0.2))
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if not waiter.pause_sync():
            break
    raise AssertionError(f"nothing listens on port {port} after {timeout:.0f}s")
