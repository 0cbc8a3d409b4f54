"""Session-wide hygiene: no child process outlives the test run, and a leak names its test.

Every test stops the processes it starts. To make a slip visible (and harmless), the live
children of the pytest process are listed after each test, each new one noted with the test
it first appeared after; at the end of the session any still alive is stopped (SIGTERM, then
SIGKILL) and the session fails with the list. On Linux the pytest process is made a child
subreaper, so a grandchild whose parent died (a devnet left by a killed ``swarmtrain local``)
is re-parented here and found too. A process a module- or session-scoped fixture keeps
across tests is fine: it is only reported if it is still running once every fixture is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator

import pytest

from protocol.retry import Backoff, Waiter
from tests.procs import children_of

PR_SET_CHILD_SUBREAPER = 36
STOP_WAIT_S = 5.0
# Helpers Python's multiprocessing starts once and keeps for the life of this process.
RUNTIME_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")
_first_seen: dict[tuple[int, str], str] = {}  # (pid, command line) -> the test it appeared after


def _become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _stop(pids: list[int]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL for what is left; reap every exited child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        waiter = Waiter(STOP_WAIT_S, Backoff.every(0.05))
        while set(pids) & set(children_of(os.getpid())) and waiter.pause_sync():
            pass
    _reap_exited()


def _reap_exited() -> None:
    # Run once every test and fixture is done: no Popen is left to want these exit codes.
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """After the test's own fixtures are torn down, note every child new since the last test."""
    try:
        return (yield)
    finally:
        for key in children_of(os.getpid()).items():
            _first_seen.setdefault(key, item.nodeid)


@pytest.fixture(scope="session", autouse=True)
def reap_leaked_children() -> Iterator[None]:
    """Stop, and report with the test that leaked them, children alive at the end of the session."""
    _become_subreaper()
    yield
    left = {pid: cmd for pid, cmd in children_of(os.getpid()).items()
            if not any(helper in cmd for helper in RUNTIME_HELPERS)}
    if not left:
        _reap_exited()
        return
    _stop(list(left))
    lines = [f"  pid {pid} ({cmd.strip()[:160]}), first seen after {_first_seen.get((pid, cmd), 'the last test')}"
             for pid, cmd in left.items()]
    pytest.fail("child processes outlived the tests (stopped now):\n" + "\n".join(lines), pytrace=False)
