"""The subnet config as a file: read it with errors that say how to get a good one, write it
with every field explained. Light on purpose (no torch, no SDK), so ``swarmtrain subnet show``
is instant.

Example:
    >>> cfg = read_subnet_config(Path("subnet.json"), netuid=1)   # SubnetConfigError says what to do
    >>> write_documented(cfg, Path("copy.json"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from protocol.files import atomic_write
from protocol.subnet import SubnetConfig


class SubnetConfigError(ValueError):
    """The subnet config file is missing or unreadable, or is not the subnet's."""


def read_subnet_config(path: Path, netuid: int | None = None) -> SubnetConfig:
    """``SubnetConfig.load`` with errors that say how to get a good file (``SubnetConfigError``)."""
    fetch = f"`swarmtrain subnet fetch --netuid {netuid if netuid is not None else 'N'} --out {path}`"
    if not path.is_file():
        raise SubnetConfigError(
            f"subnet config {path} not found: fetch the subnet's with {fetch}, or write a new "
            f"subnet's with `swarmtrain subnet init --out {path}`"
        )
    try:
        return SubnetConfig.load(path)
    except json.JSONDecodeError as exc:
        raise SubnetConfigError(f"subnet config {path} is not JSON (line {exc.lineno}: {exc.msg}): "
                                f"fetch it again with {fetch}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors()[:5])
        raise SubnetConfigError(f"subnet config {path} is invalid: {problems} (`swarmtrain subnet show "
                                f"{path}` explains every field)") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SubnetConfigError(f"cannot read subnet config {path}: {exc}") from exc


def describe_config(cfg: SubnetConfig) -> list[dict[str, Any]]:
    """Every field with its value and meaning (``swarmtrain subnet show``, the dashboard)."""
    values = cfg.model_dump()
    return [{"field": name, "value": values[name], "meaning": f.description or ""}
            for name, f in SubnetConfig.model_fields.items()]



def documented(cfg: SubnetConfig) -> dict[str, Any]:
    """The config as a JSON object that explains itself: ``_about`` and ``_doc`` (field -> meaning)
    first, then the fields. ``SubnetConfig.load`` ignores the ``_`` keys, so hashes are unchanged."""
    about = (f"swarmtrain subnet config for netuid {cfg.netuid}: every miner and validator of the subnet "
             "starts with --subnet-config pointing at this file, and nodes whose config hash differs from "
             "the lead validator's refuse to start. Keys starting with '_' are comments.")
    docs = {item["field"]: item["meaning"] for item in describe_config(cfg)}
    return {"_about": about, "_doc": docs, **cfg.model_dump()}


def write_documented(cfg: SubnetConfig, path: Path) -> None:
    """Write ``documented(cfg)`` as indented JSON, crash-safely (``protocol.files``)."""
    atomic_write(Path(path), (json.dumps(documented(cfg), indent=2) + "\n").encode("utf-8"))
