"""Helpers shared by the benchmark scripts: timing, devices, output, link arithmetic.

Benchmarks are scripts, not tests: they measure and print, and never fail because a
machine is slow. Each script ends with one ``key=value ...`` line (``summary_line``)
so a reader or a CI job can pick the figures out with ``split()``.

Example:
    >>> t = median_seconds(lambda: sum(range(1000)), repeats=3)
    >>> summary_line({"ratio": 1.0234, "n": 3})
    'ratio=1.023 n=3'
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "runs" / "bench"  # runs/ is git-ignored
MBIT = 1_000_000 / 8  # bytes per second at 1 Mbit/s


def ensure_repo_on_path() -> None:
    """Let ``python scripts/x.py`` import the project from a fresh clone (not installed)."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def pick_device(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' | 'auto'; a clear error when CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: torch sees no CUDA GPU on this machine")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | None = None) -> tuple[Any, float]:
    """(fn(), seconds) with the device synchronised before and after."""
    if device is not None:
        sync(device)
    start = time.perf_counter()
    result = fn()
    if device is not None:
        sync(device)
    return result, time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], *, repeats: int, warmup: int = 1,
                   device: torch.device | None = None) -> float:
    """Median wall-clock seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, device)[1] for _ in range(max(1, repeats)))


def transfer_seconds(nbytes: int, mbit_per_s: float) -> float:
    """Seconds to move ``nbytes`` over a ``mbit_per_s`` link (payload only, no overheads)."""
    return nbytes / (mbit_per_s * MBIT)


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_value(value: Any) -> str:
    """Floats to 4 significant digits, everything else as str."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def summary_line(fields: Mapping[str, Any]) -> str:
    """The last line every benchmark prints: ``k=v k=v``."""
    return " ".join(f"{k}={fmt_value(v)}" for k, v in fields.items())


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on (recorded next to them)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_json(out_dir: Path, name: str, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as pretty JSON to ``out_dir/name``; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def fake_hotkey(uid: int) -> str:
    """A well-formed ss58-looking address per uid (base58 digits; nothing is signed with it)."""
    digits, n = [], uid
    while True:
        n, r = divmod(n, 58)
        digits.append(_B58[r])
        if n == 0:
            return "5F" + "".join(reversed(digits)).rjust(46, "1")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table; values formatted with ``fmt_value``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
