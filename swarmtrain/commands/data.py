"""`swarmtrain data`: prepare a corpus for a subnet.

    swarmtrain data train-tokenizer CORPUS... --out tokenizer.json --vocab-size 8192
    swarmtrain data prepare CORPUS... --out data/corpus --tokenizer tokenizer.json
    swarmtrain data subnet-config data/corpus --out subnet.json [--base subnet.json]
    swarmtrain data serve data/corpus --port 8000       # or any static file server

See docs/data.md for the shard and manifest formats.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

NAME = "data"
HELP = "prepare training data: train a BPE tokenizer, tokenize a corpus into verified shards, write the subnet's data fields"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    _tokenizer_args(sub.add_parser("train-tokenizer", help="train a byte-level BPE tokenizer on a corpus sample"))
    _prepare_args(sub.add_parser("prepare", help="tokenize text sources into shards and a manifest"))
    _config_args(sub.add_parser("subnet-config", help="write a subnet config that pins a prepared dataset"))
    _serve_args(sub.add_parser("serve", help="serve a prepared dataset folder over HTTP"))


def _sources_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="text files, folders (walked; binary files skipped), .jsonl files, or hf:NAME[:SPLIT]")
    p.add_argument("--text-field", default="text", help="JSONL / Hugging Face field holding the text (default text)")
    p.add_argument("--seed", default="swarmtrain", help="shuffle seed of the document order (default swarmtrain)")


def _tokenizer_args(p: argparse.ArgumentParser) -> None:
    _sources_arg(p)
    p.add_argument("--out", type=Path, required=True, help="tokenizer JSON file to write")
    p.add_argument("--vocab-size", type=int, default=8192, help="vocabulary incl. special tokens (default 8192)")
    p.add_argument("--sample-mb", type=float, default=64.0, help="MB of text to train on (default 64)")


def _prepare_args(p: argparse.ArgumentParser) -> None:
    from swarmtrain.dataprep import DEFAULT_SHARD_TOKENS

    _sources_arg(p)
    p.add_argument("--out", type=Path, required=True, help="dataset folder to write (manifest.json, shards)")
    p.add_argument("--tokenizer", default="bytes", help="'bytes' (default) or a tokenizers JSON file")
    p.add_argument("--eos", default=None, help="end-of-document token of the tokenizer (default: detected)")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS,
                   help=f"tokens per shard (default {DEFAULT_SHARD_TOKENS})")
    p.add_argument("--val-fraction", type=float, default=0.01, help="share of documents in the val split (default 0.01)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tokenizer processes (default: all cores)")
    p.add_argument("--max-mb", type=float, default=None, help="stop after about this many MB of text")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="the prepared dataset: its folder, manifest.json, or an http(s) URL")
    p.add_argument("--out", type=Path, required=True, help="subnet config JSON to write")
    p.add_argument("--base", type=Path, default=None, help="start from this subnet config (default: the defaults)")
    p.add_argument("--preset", default=None, help="model preset to set")
    p.add_argument("--tokenizer", default=None,
                   help="path or URL of the tokenizer file nodes are told about (default: the dataset's copy)")


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", type=Path, help="the prepared dataset folder")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def run(args: argparse.Namespace) -> int:
    from protocol.data import DataError
    from swarmtrain.commands._chainargs import fail

    handlers = {"train-tokenizer": _train_tokenizer, "prepare": _prepare, "subnet-config": _subnet_config,
                "serve": _serve}
    try:
        return handlers[args.data_command](args)
    except (DataError, ValueError, OSError) as e:
        return fail(str(e))


def _train_tokenizer(args: argparse.Namespace) -> int:
    from swarmtrain.dataprep.bpe import train_tokenizer

    result = train_tokenizer(tuple(args.sources), args.out, vocab_size=args.vocab_size,
                             sample_bytes=int(args.sample_mb * 1e6), seed=args.seed, text_field=args.text_field)
    print(f"tokenizer: {args.out}")
    print(f"vocab_size={result.vocab_size} eos_id={result.info.eos_id} sample_mb={result.sample_bytes / 1e6:.1f} "
          f"seconds={result.seconds:.1f} sha256={result.sha256}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from swarmtrain.dataprep.pipeline import PrepareOptions, prepare

    opts = PrepareOptions(
        sources=tuple(args.sources), out=args.out, tokenizer=args.tokenizer, eos=args.eos,
        shard_tokens=args.shard_tokens, val_fraction=args.val_fraction, seed=args.seed, workers=args.workers,
        max_bytes=int(args.max_mb * 1e6) if args.max_mb else None, text_field=args.text_field,
    )
    if args.no_progress:
        result = prepare(opts)
    else:
        with _ProgressBar() as bar:
            result = prepare(opts, bar.update)
    m = result.manifest
    mb = m.text_bytes / 1e6
    print(f"dataset: {args.out}")
    print(f"documents={sum(m.documents.values())} text_mb={mb:.1f} train_tokens={m.total_tokens('train')} "
          f"val_tokens={m.total_tokens('val')} shards={len(m.train)}+{len(m.val)} dtype={m.dtype} "
          f"tokens_per_byte={(m.total_tokens('train') + m.total_tokens('val')) / max(1, m.text_bytes):.3f} "
          f"mb_per_s={mb / result.seconds:.2f} workers={result.workers}")
    print(f"dataset_hash={result.manifest_hash}")
    print(f"next: swarmtrain data subnet-config {args.out} --out subnet.json")
    return 0


def _subnet_config(args: argparse.Namespace) -> int:
    from protocol.subnet import SubnetConfig
    from swarmtrain.dataprep.subnet_fields import dataset_fields

    base = SubnetConfig.load(args.base) if args.base else SubnetConfig()
    fields = dataset_fields(args.dataset, args.tokenizer)
    if args.preset:
        fields["preset"] = args.preset
    cfg = SubnetConfig.model_validate({**base.model_dump(), **fields})
    cfg.save(args.out)
    print(f"subnet config: {args.out}")
    for key in ("dataset_name", "dataset_hash", "tokenizer", "tokenizer_hash", "vocab_size"):
        print(f"{key}={fields[key]}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from protocol.shards import MANIFEST_FILE
    from swarmtrain.dataprep.serve import ShardServer

    if not (args.dataset / MANIFEST_FILE).is_file():
        raise ValueError(f"{args.dataset} holds no {MANIFEST_FILE}: serve a folder 'swarmtrain data prepare' wrote")

    async def forever() -> None:
        server = ShardServer(args.dataset, args.host, args.port)
        url = await server.start()
        print(f"serving {args.dataset} at {url} (dataset_name={url}{MANIFEST_FILE}); Ctrl-C stops", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(forever())
    return 0


class _ProgressBar:
    """A rich progress bar over bytes of text, redrawn by ``update`` (no refresh thread, so
    the tokenizer processes fork from a single-threaded parent)."""

    def __enter__(self) -> _ProgressBar:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("tokenizing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 TimeRemainingColumn(), auto_refresh=False)
        self.progress.start()
        self.task = self.progress.add_task("tokenizing", total=None)
        return self

    def update(self, done: int, total: int | None) -> None:
        self.progress.update(self.task, completed=done, total=total)
        self.progress.refresh()

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
