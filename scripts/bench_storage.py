#!/usr/bin/env python3
"""Bytes a lead validator serves per window, with aggregates on the validator or in a bucket.

One process, one event loop: a real ``Validator`` (HTTPS on 127.0.0.1) and N real
``Miner``s (tiny preset: each trains, submits over signed HTTPS, fetches Aggregate(w)
and applies it), on an in-memory chain whose blocks tick on a timer; with
``--storage s3`` a local S3-protocol server (moto) holds the bucket. Counted per closed
window, from the validator's metrics lines: ``served_bytes`` (aggregates, checkpoints
and manifests it sent in GET answers) and ``uploaded_bytes`` (what it wrote to the
bucket), and the bytes the miners read from the bucket. Windows in which a miner joined
(it loads a checkpoint first) are left out, so each row is a steady-state window.

Usage:
    python scripts/bench_storage.py                      # 4 and 32 miners, both storages
    python scripts/bench_storage.py --quick              # 3 windows per miner: a few minutes
    python scripts/bench_storage.py --miners 4,32 --windows 3 --storage validator,s3

Last line: ``served_per_window_validator_4=... served_per_window_s3_32=... ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _bench_common as bc

bc.ensure_repo_on_path()

import torch  # noqa: E402

from chain.in_memory import TickingChain  # noqa: E402
from chain.wallets import create_wallet  # noqa: E402
from miner.service import Miner, MinerOptions  # noqa: E402
from miner.state import MinerStateStore  # noqa: E402
from miner.trainer import InnerTrainer  # noqa: E402
from node.checkpoints import CheckpointStore  # noqa: E402
from node.logs import MetricsWriter, read_metrics  # noqa: E402
from node.s3_local import READ_KEY, WRITE_KEY, running_local_s3  # noqa: E402
from node.signed_http import SignedClient  # noqa: E402
from node.storage import StorageKind  # noqa: E402
from protocol.data import builtin_corpus  # noqa: E402
from protocol.model import preset  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from validator.service import Validator  # noqa: E402
from validator.settings import ValidatorSettings  # noqa: E402


def subnet(storage: StorageKind) -> SubnetConfig:
    ds = builtin_corpus()
    return SubnetConfig(preset="tiny", dataset_hash=ds.content_hash, seq_len=64, batch_size=4, inner_steps=2,
                        blocks_per_window=20, eval_samples=16, max_evaluations=4, checkpoint_every=100,
                        storage=storage)


async def run_network(root: Path, storage: StorageKind, n: int, windows: int, s3: Any, block_time: float) -> dict[str, Any]:
    """Run 1 validator + ``n`` miners until every miner finished ``windows`` windows."""
    cfg, ds = subnet(storage), builtin_corpus()
    wallets = [create_wallet(f"node{i}", "default", root / "wallets") for i in range(n + 1)]
    chain = TickingChain([w.hotkey.ss58_address for w in wallets], block_time, tempo=1000)
    extra = {} if s3 is None else dict(
        s3_endpoint=s3.endpoint, s3_bucket=s3.bucket, s3_prefix=f"bench-{n}", s3_write_key_id=WRITE_KEY[0],
        s3_write_secret=WRITE_KEY[1], s3_read_key_id=READ_KEY[0], s3_read_secret=READ_KEY[1])
    settings = ValidatorSettings(netuid=cfg.netuid, state_dir=root / "validator", port=0,
                                 poll_interval_s=block_time / 2, **extra)
    validator = Validator(chain, wallets[0], cfg, settings, ds)
    await validator.start()
    miners, clients = [], []
    for i, wallet in enumerate(wallets[1:], start=1):
        clients.append(SignedClient(wallet, timeout=30))
        miners.append(Miner(chain=chain, wallet=wallet, cfg=cfg, dataset=ds, trainer=InnerTrainer(preset("tiny"), lr=1e-2),
                            store=MinerStateStore(root / f"miner{i}"), client=clients[-1],
                            metrics=MetricsWriter(root / f"miner{i}" / "metrics.jsonl"),
                            options=MinerOptions(sync_timeout_s=60, poll_interval_s=block_time / 2)))
    stop = asyncio.Event()
    vtask = asyncio.create_task(validator.run(stop=stop))
    try:
        await asyncio.gather(*(m.run(max_windows=windows) for m in miners))
        if validator.mirror is not None:
            await validator.mirror.wait_idle(30)
    finally:
        stop.set()
        await asyncio.wait_for(vtask, timeout=60)
        await validator.close()
        for client in clients:
            await client.close()
    return summarize(root, n, storage, sum(m.links.bytes_read for m in miners))


def summarize(root: Path, n: int, storage: str, bucket_read: int) -> dict[str, Any]:
    lines = [r for r in read_metrics(root / "validator" / "metrics.jsonl") if "window" in r]
    joined = max(min(r["window"] for r in read_metrics(root / f"miner{i}" / "metrics.jsonl") if "window" in r)
                 for i in range(1, n + 1))
    steady = [r for r in lines if r["window"] > joined and r["contributors"]]
    store = CheckpointStore(root / "validator")
    sizes = [len(store.get_aggregate(r["window"]) or b"") for r in steady]
    copies = [r["served_bytes"] / size for r, size in zip(steady, sizes, strict=True) if size]
    return {"storage": storage, "miners": n, "windows": len(steady),
            "served_per_window": statistics.median([r["served_bytes"] for r in steady]) if steady else 0,
            "uploaded_per_window": statistics.median([r["uploaded_bytes"] for r in steady]) if steady else 0,
            "aggregate_bytes": statistics.median(sizes) if sizes else 0,
            "aggregates_served_per_window": statistics.median(copies) if copies else 0.0,
            "bucket_read_total": bucket_read}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--miners", default="4,32", help="comma-separated network sizes")
    p.add_argument("--storage", default="validator,s3", help="comma-separated: validator, s3")
    p.add_argument("--windows", type=int, default=None, help="windows each miner finishes (default 5, --quick 3)")
    p.add_argument("--quick", action="store_true", help="3 windows per miner (4 and 32 miners, both storages)")
    p.add_argument("--block-time", type=float, default=0.5, help="seconds per block (20 blocks per window)")
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "storage")
    args = p.parse_args(argv)
    args.windows = args.windows or (3 if args.quick else 5)
    bad = [k for k in args.storage.split(",") if k and k not in ("validator", "s3")]
    if bad:
        p.error(f"--storage takes validator and/or s3, not {','.join(bad)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    logging.getLogger("swarmtrain").setLevel(logging.ERROR)  # 32 miners' progress lines drown the table
    sizes = [int(x) for x in args.miners.split(",") if x]
    kinds = [k for k in args.storage.split(",") if k]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HOME"] = tmp  # the SDK writes under ~/.bittensor
        for kind in kinds:
            for n in sizes:
                root = Path(tmp) / f"{kind}-{n}"
                if kind == "s3":
                    with running_local_s3() as s3:
                        rows.append(asyncio.run(run_network(root, kind, n, args.windows, s3, args.block_time)))
                else:
                    rows.append(asyncio.run(run_network(root, kind, n, args.windows, None, args.block_time)))
                print(f"{kind} {n} miners: {rows[-1]}", flush=True)
    print(bc.markdown_table(
        ["storage", "miners", "steady windows", "aggregate", "validator served / window", "= aggregates",
         "validator uploaded / window", "miners read from the bucket (total)"],
        [[r["storage"], r["miners"], r["windows"], bc.human_bytes(r["aggregate_bytes"]),
          bc.human_bytes(r["served_per_window"]), round(r["aggregates_served_per_window"], 2),
          bc.human_bytes(r["uploaded_per_window"]), bc.human_bytes(r["bucket_read_total"])] for r in rows]))
    fields = {f"served_per_window_{r['storage']}_{r['miners']}": int(r["served_per_window"]) for r in rows}
    fields.update({f"aggregates_served_{r['storage']}_{r['miners']}": r["aggregates_served_per_window"]
                   for r in rows})
    fields.update({f"uploaded_per_window_{r['storage']}_{r['miners']}": int(r["uploaded_per_window"]) for r in rows})
    print(f"wrote {bc.write_json(args.out, 'storage.json', {'rows': rows})}")
    print(bc.summary_line(fields))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
