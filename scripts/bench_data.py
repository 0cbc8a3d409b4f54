#!/usr/bin/env python3
"""Benchmark data preparation and shard streaming, side by side on one corpus in one run.

1. Preparation throughput: ``swarmtrain data prepare`` with a BPE tokenizer on the same
   text with 1 worker and with every core (MB of text per second, and per core).
2. Tokens per byte: the byte tokenizer against the BPE one on the same text.
3. A fresh miner's wait before its first window: open the manifest and fetch only the
   shards its window assigns (lazy), against downloading every train shard first (full),
   both from a local aiohttp server on 127.0.0.1 capped at ``--rate-mbit`` (a home link),
   and uncapped.

The corpus is text already on the machine (default: the interpreter's standard library
folder, /usr/share/doc and /usr/share/man); nothing is downloaded.

    python scripts/bench_data.py --quick       # ~30 MB of text, a few minutes on 2 cores
    python scripts/bench_data.py               # ~300 MB of text
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

# The project (and torch, through _bench_common) is imported inside the functions: the
# tokenizer processes re-import this script when they start ("spawn"), and should not
# pay for them.
if TYPE_CHECKING:
    from swarmtrain.dataprep.pipeline import PrepareResult

REPO_ROOT = Path(__file__).resolve().parent.parent

QUICK = {"max_mb": 30.0, "sample_mb": 8.0, "vocab_size": 8192}
FULL = {"max_mb": 300.0, "sample_mb": 32.0, "vocab_size": 16384}


def default_corpus() -> list[str]:
    found = [sysconfig.get_paths()["stdlib"], "/usr/share/doc", "/usr/share/man"]
    return [p for p in found if Path(p).is_dir()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help=f"smaller corpus and vocabulary: {QUICK}")
    p.add_argument("--corpus", nargs="+", default=None, help="text sources (default: stdlib, /usr/share/doc, man pages)")
    p.add_argument("--max-mb", type=float, default=None, help="MB of text to prepare (default 300, quick 30)")
    p.add_argument("--sample-mb", type=float, default=None, help="MB of text the tokenizer trains on")
    p.add_argument("--vocab-size", type=int, default=None, help="BPE vocabulary (default 16384, quick 8192)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="cores for the parallel run")
    p.add_argument("--shard-tokens", type=int, default=1 << 20, help="tokens per shard (default 2^20)")
    p.add_argument("--seq-len", type=int, default=1024, help="miner window: tokens per sample")
    p.add_argument("--window-samples", type=int, default=640, help="miner window: samples (batch x inner steps)")
    p.add_argument("--rate-mbit", type=float, default=100.0, help="the capped server's upload rate (Mbit/s)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the prepared data here (default: a temp dir)")
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.corpus = args.corpus or default_corpus()
    return args


def run_prepare(args: argparse.Namespace, work: Path, name: str, tokenizer: str, workers: int) -> PrepareResult:
    from swarmtrain.dataprep.pipeline import PrepareOptions, prepare

    opts = PrepareOptions(sources=tuple(args.corpus), out=work / name, tokenizer=tokenizer, workers=workers,
                          shard_tokens=args.shard_tokens, max_bytes=int(args.max_mb * 1e6), val_fraction=0.01)
    result = prepare(opts)
    m = result.manifest
    print(f"  {name:<10} workers={workers} text={m.text_bytes / 1e6:.1f} MB in {result.seconds:.1f} s "
          f"-> {m.text_bytes / 1e6 / result.seconds:.2f} MB/s, {len(m.train)}+{len(m.val)} shards, "
          f"{tokens(result) / m.text_bytes:.3f} tokens/byte")
    return result


def tokens(result: PrepareResult) -> int:
    return result.manifest.total_tokens("train") + result.manifest.total_tokens("val")


def first_window_wait(args: argparse.Namespace, dataset: Path, cache: Path, rate: float | None) -> dict[str, float]:
    """Seconds from nothing local to a miner's first window's data, lazily and with a full download."""
    from node.sharded_dataset import ShardedDataset
    from protocol.windows import assigned_samples
    from swarmtrain.dataprep.serve import serve_in_thread

    shutil.rmtree(cache, ignore_errors=True)
    with serve_in_thread(dataset, rate_bytes_per_s=rate) as server:
        started = time.perf_counter()
        ds = ShardedDataset.open(server.url, cache_dir=cache / "lazy")
        population = ds.num_samples(args.seq_len)
        indices = assigned_samples(b"swarmtrain", 0, 0, min(args.window_samples, int(population)), population)
        fetched = ds.prefetch(indices, args.seq_len)
        ds.batch(indices[:8], args.seq_len)
        lazy = time.perf_counter() - started
        started = time.perf_counter()
        full = ShardedDataset.open(server.url, cache_dir=cache / "full")
        full.store.ensure(full.manifest.train)
        full.batch(indices[:8], args.seq_len)
        full_s = time.perf_counter() - started
    return {"lazy_s": lazy, "full_s": full_s, "lazy_shards": len(fetched), "total_shards": len(ds.manifest.train),
            "lazy_mb": sum(e.bytes for e in ds.manifest.train if e.file in fetched) / 1e6,
            "full_mb": sum(e.bytes for e in ds.manifest.train) / 1e6}


def main(argv: list[str] | None = None) -> dict[str, object]:
    sys.path.insert(0, str(REPO_ROOT))  # a fresh clone, not installed
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-data-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"corpus: {' '.join(args.corpus)} (first {args.max_mb:g} MB of text in the shuffled order)")
    try:
        return run(args, work)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    import _bench_common as bc

    from swarmtrain.dataprep.bpe import train_tokenizer

    tok = work / "tokenizer.json"
    trained = train_tokenizer(tuple(args.corpus), tok, vocab_size=args.vocab_size, sample_bytes=int(args.sample_mb * 1e6))
    print(f"tokenizer: vocab {trained.vocab_size}, trained on {trained.sample_bytes / 1e6:.1f} MB in {trained.seconds:.1f} s")
    print("prepare:")
    one = run_prepare(args, work, "bpe-1", str(tok), workers=1)
    many = run_prepare(args, work, "bpe-n", str(tok), workers=args.workers)
    byte = run_prepare(args, work, "bytes", "bytes", workers=args.workers)
    assert one.manifest_hash == many.manifest_hash, "prepare must not depend on the number of workers"
    text_mb = one.manifest.text_bytes / 1e6
    print("first window of a fresh miner (lazy: its shards only; full: every train shard first):")
    waits = {}
    for label, rate in (("capped", args.rate_mbit * bc.MBIT), ("local", None)):
        waits[label] = first_window_wait(args, work / "bpe-n", work / "cache", rate)
        w = waits[label]
        print(f"  {label:<7} lazy {w['lazy_s']:.2f} s ({w['lazy_shards']} of {w['total_shards']} shards, "
              f"{w['lazy_mb']:.1f} MB)  full {w['full_s']:.2f} s ({w['full_mb']:.1f} MB)  "
              f"-> {w['full_s'] / w['lazy_s']:.1f}x")
    cap = waits["capped"]
    summary = {
        "text_mb": text_mb, "workers": args.workers,
        "prep_mb_s_1": text_mb / one.seconds, "prep_mb_s_n": text_mb / many.seconds,
        "prep_mb_s_per_core": text_mb / many.seconds / args.workers, "parallel_speedup": one.seconds / many.seconds,
        "bytes_prep_mb_s_n": text_mb / byte.seconds,
        "vocab": trained.vocab_size, "tokens_per_byte_bytes": tokens(byte) / byte.manifest.text_bytes,
        "tokens_per_byte_bpe": tokens(many) / many.manifest.text_bytes,
        "bytes_over_bpe_tokens": tokens(byte) / tokens(many),
        "rate_mbit": args.rate_mbit, "lazy_wait_s": cap["lazy_s"], "full_wait_s": cap["full_s"],
        "wait_ratio": cap["full_s"] / cap["lazy_s"], "lazy_shards": cap["lazy_shards"],
        "total_shards": cap["total_shards"], "local_wait_ratio": waits["local"]["full_s"] / waits["local"]["lazy_s"],
    }
    print(bc.summary_line(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
