"""The child processes of ``swarmtrain local``: started with their log, stopped for sure.

``ManagedProcess`` runs one node (its output appended to a log file) and stops it with
SIGTERM, then SIGKILL; ``die_with_parent`` makes Linux end every child when the parent
dies, even by SIGKILL (``PR_SET_PDEATHSIG``).

Example:
    >>> proc = ManagedProcess("miner1", argv, Path("logs/miner1.log"), env).start()
    >>> proc.alive(), proc.pid
    >>> proc.stop()
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from node.logs import progress_line

log = logging.getLogger("swarmtrain.local")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _load_prctl() -> Any:
    """libc's ``prctl`` on Linux, else None; resolved in the parent (no dlopen after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def die_with_parent() -> None:
    """``preexec_fn`` of every child: Linux sends it SIGTERM when its parent dies (even by SIGKILL).

    The signal fires when the *thread* that forked the child exits, so children are started
    from the main thread. Without ``prctl`` (not Linux) children are started without this
    hook; ``stop_all`` still stops every child on a normal exit, Ctrl-C or SIGTERM.
    """
    parent = os.getppid()
    _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect: do not start at all
        os._exit(1)


def _preexec() -> Callable[[], None] | None:
    return die_with_parent if _PRCTL is not None else None



class ManagedProcess:
    """A child process with its output in a log file; ``stop`` is terminate-then-kill."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str]) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as fh:
            fh.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            self.proc = subprocess.Popen(
                self.argv, stdout=fh, stderr=subprocess.STDOUT, env=self.env, preexec_fn=_preexec()
            )
        log.info(progress_line("started", name=self.name, pid=self.proc.pid, log=self.log_path))
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else -1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL, no chance to clean up (used to test crash recovery)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, grace_s: float = 10.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            log.warning(progress_line("ignored SIGTERM: killing it", name=self.name, grace_s=grace_s))
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
