#!/usr/bin/env python3
"""Where a miner's window goes, on the real local network, and what it sends.

Two parts:

* **window** — starts ``swarmtrain local`` (devnet, validator and miners as separate
  processes on 127.0.0.1), lets it run, and reads the timings each miner writes per
  window: inner compute (``train``), ``compress``, ``upload``, ``wait`` (for the chain to
  leave the window), ``sync`` (wait for the validator's aggregate, download it, apply
  it, check its hash) and ``checkpoint``. ``overhead_share`` = the share of the miner's
  busy time (all but ``wait``) that is not training; ``idle_share`` = wait / window;
  ``overhead_share_at_chain_window`` = those protocol seconds over the real chain's
  window (blocks_per_window x 12 s), i.e. the overhead when H is sized to fill it.
* **bandwidth** — bytes each miner uploads (one codec payload) and downloads (one
  aggregate) per window for every preset, computed with the real codec and aggregate
  encoder on random-normal tensors of each preset's shapes, beside dense fp32, and the
  seconds that takes at 10 and 100 Mbit/s. No model is allocated: each distinct
  tensor shape is encoded once and the sizes summed over the parameter list.

Usage:
    python scripts/bench_window.py --bandwidth-only        # the table, ~1 minute
    python scripts/bench_window.py                         # local network + table
    python scripts/bench_window.py --quick                 # 3 windows per miner, a few minutes
    python scripts/bench_window.py --miners 2 --windows 6 --inner-steps 60

Last line: ``overhead_share=<x> idle_share=<x> ... overhead_share_at_chain_window=<x> ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _bench_common as bc

bc.ensure_repo_on_path()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from protocol import codec  # noqa: E402
from protocol.aggregate_payload import encode_aggregate  # noqa: E402
from protocol.model import estimate_params, expected_spec, preset  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402

BANDWIDTH_PRESETS = ("tiny", "small", "150m", "1b")
LINKS_MBIT = (10, 100)
PHASES = ("train", "compress", "upload", "wait", "sync", "checkpoint")
CHAIN_BLOCK_S = 12.0  # Bittensor's block time, for the projection to a real window

# ---------------------------------------------------------------------------- bandwidth


def _shape_sizes(shape: tuple[int, ...], ccfg: codec.CodecConfig, top_g: int,
                 gen: torch.Generator) -> tuple[int, int]:
    """(upload record bytes, aggregate record bytes) of one tensor of ``shape``.

    Upload: one miner's compressed random-normal tensor. Aggregate: the union of ``top_g``
    independent miners' kept positions (no overlap beyond chance: the worst case).
    """
    spec = {"x": shape}
    header = len(codec.encode({}, ccfg))
    positions: list[np.ndarray] = []
    upload = 0
    for g in range(top_g):
        sparse = codec.compress({"x": torch.randn(shape, generator=gen)}, ccfg)
        if g == 0:
            upload = len(codec.encode(sparse, ccfg)) - header
        positions.append(sparse["x"].indices.numpy())
    union = np.unique(np.concatenate(positions))
    dense = torch.zeros(math.prod(shape))
    dense[torch.from_numpy(union)] = 1.0
    agg_header = len(encode_aggregate({}, {}))
    download = len(encode_aggregate({"x": dense.view(shape)}, spec)) - agg_header
    return upload, download


def preset_bandwidth(name: str, ccfg: codec.CodecConfig, top_g: int, seed: int = 0) -> dict[str, Any]:
    """Per-window bytes for one preset (tensor names are not on the wire: only their order)."""
    spec = expected_spec(preset(name))
    gen = torch.Generator().manual_seed(seed)
    cache: dict[tuple[int, ...], tuple[int, int]] = {}
    upload = len(codec.encode({}, ccfg))
    download = len(encode_aggregate({}, {}))
    for shape in spec.values():
        if shape not in cache:
            cache[shape] = _shape_sizes(shape, ccfg, top_g, gen)
        upload += cache[shape][0]
        download += cache[shape][1]
    params = estimate_params(preset(name))
    return {"preset": name, "params": params, "dense_fp32": 4 * params, "upload": upload,
            "download": download, "download_g_payloads": top_g * upload}


def bandwidth_table(presets: Sequence[str], subnet: SubnetConfig) -> list[dict[str, Any]]:
    ccfg = subnet.codec_config()
    rows = []
    for name in presets:
        row = preset_bandwidth(name, ccfg, subnet.top_g)
        for mbit in LINKS_MBIT:
            for key in ("dense_fp32", "upload", "download", "download_g_payloads"):
                row[f"{key}_s_{mbit}"] = bc.transfer_seconds(row[key], mbit)
        rows.append(row)
        print(f"bandwidth {name}: upload {bc.human_bytes(row['upload'])}, "
              f"download {bc.human_bytes(row['download'])}", flush=True)
    return rows


def bandwidth_markdown(rows: Sequence[Mapping[str, Any]], subnet: SubnetConfig) -> str:
    """Two tables: bytes per window (vs dense fp32), then seconds on 10 and 100 Mbit/s links."""
    g = subnet.top_g
    sizes = [[r["preset"], f"{r['params'] / 1e6:.2f} M", bc.human_bytes(r["dense_fp32"])]
             + [f"{bc.human_bytes(r[k])} ({r['dense_fp32'] / r[k]:.1f}x)"
                for k in ("upload", "download", "download_g_payloads")] for r in rows]
    first = bc.markdown_table(["preset", "params", "dense fp32", "upload: 1 payload",
                               f"download: aggregate of G={g}", f"alt. download: the G={g} payloads"], sizes)
    keys = ("dense_fp32", "upload", "download", "download_g_payloads")
    times = [[r["preset"], mbit] + [f"{r[f'{k}_s_{mbit}']:.3g}" for k in keys]
             for r in rows for mbit in LINKS_MBIT]
    second = bc.markdown_table(["preset", "Mbit/s", "dense fp32 s", "upload s", "download s",
                                "alt. download s"], times)
    return first + "\n\n" + second


# ---------------------------------------------------------------------------- local network


def window_records(miner_records: Mapping[str, list[dict[str, Any]]],
                   skip_first: int) -> tuple[list[dict[str, float]], int]:
    """(timings of every submitted window of every miner, count of trained-but-late windows),
    dropping each miner's first ``skip_first`` windows (start-up: catch-up, registration)."""
    out, late = [], 0
    for records in miner_records.values():
        trained = [r for r in records if r.get("event") == "window" and r.get("trained")]
        for r in trained[skip_first:]:
            if not r.get("submitted", True) or not r.get("accepted", [0]):
                late += 1  # training overran the window, or no validator accepted it
                continue
            timings = r.get("timings") or {}
            out.append({k: float(timings.get(k, 0.0)) for k in PHASES})
    return out, late


def breakdown(windows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Median seconds per phase and the shares of the window that are not training.

    ``overhead_share``: of the miner's busy time (everything but ``wait``, the idle time
    until the chain reaches the next window, which only says the window was sized longer
    than H steps), the part that is not training: compress, upload, sync (waiting for the
    validator's aggregate, downloading and applying it), checkpoint.
    ``idle_share``: ``wait`` over the whole window.
    """
    if not windows:
        raise ValueError("no submitted window with timings: the miners wrote no usable metrics")
    med = {k: statistics.median(w[k] for w in windows) for k in PHASES}
    total = statistics.median(sum(w.values()) for w in windows)
    busy = [sum(w.values()) - w["wait"] for w in windows]
    return {
        "windows": len(windows), "median_s": med, "window_s": total,
        "overhead_share": statistics.median(1 - w["train"] / b for w, b in zip(windows, busy, strict=True)),
        "idle_share": statistics.median(w["wait"] / sum(w.values()) for w in windows),
        "protocol_s": statistics.median(b - w["train"] for w, b in zip(windows, busy, strict=True)),
        "shares": {k: med[k] / total for k in PHASES},
    }


def run_localnet(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run ``swarmtrain local`` in-process (its nodes are child processes); return the records."""
    from protocol.data import builtin_corpus
    from swarmtrain.localnet import LocalNet, LocalNetConfig, default_miners

    subnet = SubnetConfig(preset=args.preset, dataset_hash=builtin_corpus().content_hash,
                          inner_steps=args.inner_steps, blocks_per_window=args.blocks_per_window)
    cfg = LocalNetConfig(out=out, miners=default_miners(args.miners), windows=args.windows,
                         subnet=subnet, block_time=args.block_time, tempo=args.tempo,
                         timeout_s=args.timeout, device=args.device)
    with LocalNet(cfg) as net:
        result = asyncio.run(net.run())
    return {"miner_records": result.miner_records, "validator_records": result.validator_records,
            "seconds": result.seconds, "window_s": cfg.window_s, "subnet": subnet.model_dump()}


def validator_close_s(records: Sequence[Mapping[str, Any]]) -> float:
    """Median seconds the validator took to close a window (evaluate, aggregate, apply)."""
    secs = [float(r["seconds"]) for r in records if "seconds" in r and r.get("submissions")]
    return statistics.median(secs) if secs else math.nan


def print_breakdown(b: Mapping[str, Any], window_s: float) -> None:
    rows = [[k, round(b["median_s"][k], 3), f"{100 * b['shares'][k]:.1f} %"] for k in PHASES]
    rows.append(["window (sum)", round(b["window_s"], 3), "100 %"])
    print(f"chain window: {window_s:.1f} s; {b['windows']} miner-windows measured (medians)")
    print(bc.markdown_table(["phase", "seconds", "share"], rows))


# ---------------------------------------------------------------------------- cli


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = SubnetConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bandwidth-only", action="store_true", help="only the bandwidth table")
    p.add_argument("--no-bandwidth", action="store_true", help="skip the bandwidth table")
    p.add_argument("--bandwidth-presets", default=",".join(BANDWIDTH_PRESETS))
    p.add_argument("--preset", default="tiny", help="model preset of the local network")
    p.add_argument("--miners", type=int, default=2)
    p.add_argument("--windows", type=int, default=6, help="windows every miner must finish")
    p.add_argument("--skip-first", type=int, default=1, help="start-up windows left out per miner")
    p.add_argument("--inner-steps", type=int, default=d.inner_steps)
    p.add_argument("--blocks-per-window", type=int, default=d.blocks_per_window)
    p.add_argument("--block-time", type=float, default=0.5, help="devnet seconds per block")
    p.add_argument("--tempo", type=int, default=20)
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "window")
    p.add_argument("--quick", action="store_true", help="3 windows per miner (the first left out)")
    args = p.parse_args(argv)
    if args.quick:
        args.windows = min(args.windows, 3)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    subnet = SubnetConfig()
    fields: dict[str, Any] = {}
    record: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if not args.bandwidth_only:
        with tempfile.TemporaryDirectory(prefix="bench-window-") as tmp:
            net = run_localnet(args, Path(tmp) / "local")
        windows, late = window_records(net["miner_records"], args.skip_first)
        b = breakdown(windows)
        print_breakdown(b, net["window_s"])
        real_window = SubnetConfig().blocks_per_window * CHAIN_BLOCK_S
        projected = b["protocol_s"] / real_window
        print(f"late or refused windows: {late}; protocol seconds per window {b['protocol_s']:.2f} "
              f"= {100 * projected:.2f} % of the real chain's {real_window:.0f} s window")
        record.update(localnet=net, breakdown=b, late_windows=late)
        fields.update(overhead_share=b["overhead_share"], idle_share=b["idle_share"],
                      protocol_s=b["protocol_s"], train_s=b["median_s"]["train"],
                      overhead_share_at_chain_window=projected, late_windows=late,
                      validator_close_s=validator_close_s(net["validator_records"]))
    if not args.no_bandwidth:
        rows = bandwidth_table([p.strip() for p in args.bandwidth_presets.split(",") if p.strip()], subnet)
        print(bandwidth_markdown(rows, subnet))
        record["bandwidth"] = rows
        big = rows[-1]
        fields.update({f"upload_mb_{big['preset']}": big["upload"] / 1e6,
                       f"download_mb_{big['preset']}": big["download"] / 1e6,
                       f"compression_ratio_fp32_{big['preset']}": big["dense_fp32"] / big["upload"]})
    print(f"wrote {bc.write_json(args.out, 'window.json', record)}")
    print(bc.summary_line(fields))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
