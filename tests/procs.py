"""Reading processes from /proc (Linux) for the tests that check none is left behind."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")


def stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of ``pid``, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Running: a zombie has exited, only its entry is left."""
    found = stat(pid)
    return found is not None and found[0] != "Z"


def cmdline(pid: int) -> str | None:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def live_processes() -> dict[int, str]:
    """{pid: command line} of every running process but this one ({} without /proc)."""
    if not PROC.is_dir():
        return {}
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and alive(int(entry.name)):
            cmd = cmdline(int(entry.name))
            if cmd is not None:
                found[int(entry.name)] = cmd
    return found


def children_of(parent: int) -> dict[int, str]:
    """{pid: command line} of the running children of ``parent``.

    Reads the kernel's per-thread child lists (cheap: the reaper fixture calls this after
    every test); scans every process where the kernel does not provide them.
    """
    pids = _listed_children(parent)
    if pids is None:
        return {pid: cmd for pid, cmd in live_processes().items() if (stat(pid) or ("", -1))[1] == parent}
    found = {}
    for pid in pids:
        cmd = cmdline(pid) if alive(pid) else None
        if cmd is not None:
            found[pid] = cmd
    return found


def _listed_children(parent: int) -> set[int] | None:
    tasks = PROC / str(parent) / "task"
    try:
        files = [t / "children" for t in tasks.iterdir()]
        if not files or not files[0].exists():
            return None
        return {int(pid) for f in files if f.exists() for pid in f.read_text().split()}
    except OSError:
        return None
