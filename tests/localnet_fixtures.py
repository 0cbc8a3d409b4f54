"""Shared set-up of the multi-process local-network tests: a tiny subnet and a running LocalNet."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protocol.data import builtin_corpus
from protocol.subnet import SubnetConfig
from swarmtrain.localnet import LocalNet, LocalNetConfig, LocalRunResult

ROOT = Path(__file__).resolve().parents[1]
# The corpus cache stays where it is when HOME moves to a temp dir (built once, reused).
CACHE = os.environ.get("SWARMTRAIN_CACHE") or str(Path.home() / ".cache" / "swarmtrain")


def tiny_subnet(**overrides: Any) -> SubnetConfig:
    """The tiny preset on the local built-in corpus, with 10-block windows."""
    fields: dict[str, Any] = dict(
        preset="tiny", dataset_hash=builtin_corpus(CACHE).content_hash, seq_len=64, batch_size=8,
        inner_lr=1e-2, blocks_per_window=10, checkpoint_every=2,
    )
    return SubnetConfig(**{**fields, **overrides})


@contextmanager
def running_localnet(tmp: Path, **config: Any) -> Iterator[tuple[LocalNet, LocalRunResult]]:
    """Run a LocalNet to completion (0.5 s blocks, tempo 10) with HOME in ``tmp`` (the SDK
    writes under ~/.bittensor); yield it and its result, then stop every process and
    restore the environment."""
    home = str(tmp / "home")
    saved = {k: os.environ.get(k) for k in ("HOME", "SWARMTRAIN_CACHE")}
    os.environ.update(HOME=home, SWARMTRAIN_CACHE=CACHE)
    cfg = LocalNetConfig(
        out=tmp / "out", block_time=0.5, tempo=10,
        extra_env={"PYTHONPATH": str(ROOT), "HOME": home, "SWARMTRAIN_CACHE": CACHE}, **config,
    )
    try:
        with LocalNet(cfg) as net:
            yield net, asyncio.run(net.run())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
