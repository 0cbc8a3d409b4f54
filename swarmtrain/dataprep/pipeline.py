"""``swarmtrain data prepare``: text sources -> token shards + manifest, streaming, on every core.

    plan chunks (sorted, shuffled with the seed) -> tasks of ~1 MiB (small files
    together) -> workers read + tokenize tasks -> results in task order -> train/val
    ShardWriters -> manifest.json (written last)

Memory stays bounded: at most ``2 * workers`` tasks are in flight and each split holds
one shard's buffer. The output depends only on the sources and the options (not on the
number of workers or timing), so re-running the command gives identical bytes.

Example:
    >>> result = prepare(PrepareOptions(sources=("corpus/",), out=Path("data/corpus-bpe"),
    ...                                 tokenizer="tokenizer.json"))
    >>> result.manifest_hash    # pin it as the subnet config's dataset_hash
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from protocol.data import DataSourceError
from protocol.files import atomic_write
from protocol.shards import (
    MANIFEST_FILE,
    Manifest,
    ShardEntry,
    TokenizerEntry,
    dtype_for_vocab,
    manifest_bytes,
    manifest_hash,
)
from protocol.tokenizer import BYTES, TokenizerInfo, byte_tokenizer, load_tokenizer_file
from swarmtrain.dataprep import DEFAULT_SHARD_TOKENS
from swarmtrain.dataprep.corpus import CHUNK_BYTES, Chunk, hf_chunks, hf_sources, plan_chunks
from swarmtrain.dataprep.encode import PARALLELISM_ENV, EncodedChunk, init_worker, work
from swarmtrain.dataprep.writer import ShardWriter

TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class PrepareOptions:
    """What ``swarmtrain data prepare`` takes (see its --help)."""

    sources: tuple[str, ...]
    out: Path
    tokenizer: str = BYTES  # "bytes" or the path of a tokenizers JSON file
    eos: str | None = None
    shard_tokens: int = DEFAULT_SHARD_TOKENS
    val_fraction: float = 0.01
    seed: str = "swarmtrain"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    chunk_bytes: int = CHUNK_BYTES  # file pieces and tasks: small, so --max-mb wastes little work
    max_bytes: int | None = None  # stop after the task that reaches this much text
    text_field: str = "text"


@dataclass(frozen=True)
class PrepareResult:
    manifest: Manifest
    manifest_hash: str
    seconds: float
    workers: int


def prepare(opts: PrepareOptions, progress: Callable[[int, int | None], None] | None = None) -> PrepareResult:
    """Tokenize ``opts.sources`` into shards under ``opts.out``; ``progress(bytes_done, total)``."""
    _check_options(opts)
    started = time.monotonic()
    info, tokenizer_text, tokenizer_data = _tokenizer(opts)
    dtype = dtype_for_vocab(info.vocab_size)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    writers = {split: ShardWriter(out, split, opts.shard_tokens, dtype) for split in ("train", "val")}
    chunks = plan_chunks(opts.sources, opts.chunk_bytes, opts.seed)
    total = sum(c.length for c in chunks) if not hf_sources(opts.sources) else None
    counts = _Counts()
    for task, encoded in _encoded(_tasks(_all_chunks(chunks, opts), opts.chunk_bytes), opts, tokenizer_text,
                                  info.eos_id):
        writers["train"].append(encoded.train)
        writers["val"].append(encoded.val)
        counts.add(task, encoded)
        if progress is not None:
            progress(counts.source_bytes, total)
        if opts.max_bytes is not None and counts.text_bytes >= opts.max_bytes:
            break
    entries = {split: w.finish() for split, w in writers.items()}
    if tokenizer_data is not None:
        atomic_write(out / TOKENIZER_FILE, tokenizer_data)
    manifest = _manifest(opts, info, dtype, entries, counts, max(w.max_id for w in writers.values()))
    data = manifest_bytes(manifest)
    atomic_write(out / MANIFEST_FILE, data)
    return PrepareResult(manifest, manifest_hash(data), time.monotonic() - started, opts.workers)


def _check_options(opts: PrepareOptions) -> None:
    if not opts.sources:
        raise ValueError("no text source given")
    if opts.shard_tokens < 2:
        raise ValueError(f"shard_tokens must be at least 2, got {opts.shard_tokens}")
    if not 0 < opts.val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {opts.val_fraction}")
    if opts.workers < 1:
        raise ValueError(f"workers must be at least 1, got {opts.workers}")


def _tokenizer(opts: PrepareOptions) -> tuple[TokenizerInfo, str, bytes | None]:
    """(info, what workers build the encoder from, the file's bytes to copy next to the shards)."""
    if opts.tokenizer == BYTES:
        return byte_tokenizer(), BYTES, None
    info, data = load_tokenizer_file(opts.tokenizer, opts.eos)
    return info, data.decode("utf-8"), data


def _clear_previous(out: Path) -> None:
    """Remove an earlier preparation's manifest first (a half-rewritten folder is never a
    dataset), then its shards."""
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    for path in out.iterdir():
        if path.suffix == ".tok" and path.name.startswith(("train-", "val-")):
            path.unlink()


def _all_chunks(chunks: list[Chunk], opts: PrepareOptions) -> Iterator[Chunk]:
    yield from chunks
    for source in hf_sources(opts.sources):
        yield from hf_chunks(source, opts.text_field, opts.chunk_bytes)


def _tasks(chunks: Iterator[Chunk], chunk_bytes: int) -> Iterator[tuple[Chunk, ...]]:
    """Consecutive chunks grouped until ``chunk_bytes``: one task per big file piece, many
    small files per task (a task per file would cost more in messages than in tokenizing)."""
    task: list[Chunk] = []
    size = 0
    for chunk in chunks:
        task.append(chunk)
        size += chunk.length
        if size >= chunk_bytes:
            yield tuple(task)
            task, size = [], 0
    if task:
        yield tuple(task)


@dataclass
class _Counts:
    source_bytes: int = 0
    text_bytes: int = 0
    docs: list[int] = field(default_factory=lambda: [0, 0])

    def add(self, task: tuple[Chunk, ...], encoded: EncodedChunk) -> None:
        self.source_bytes += sum(c.length for c in task)
        self.text_bytes += encoded.text_bytes
        self.docs = [self.docs[0] + encoded.docs[0], self.docs[1] + encoded.docs[1]]


def _manifest(opts: PrepareOptions, info: TokenizerInfo, dtype: Literal["uint16", "uint32"], entries: dict[str, list[ShardEntry]],
              counts: _Counts, max_id: int) -> Manifest:
    for split in ("train", "val"):
        if not entries[split]:
            raise DataSourceError(
                f"no document went to the {split} split ({sum(counts.docs)} documents, val_fraction "
                f"{opts.val_fraction}): add text, or change --val-fraction"
            )
    return Manifest(
        tokenizer=TokenizerEntry(kind=info.kind, sha256=info.sha256, vocab_size=info.vocab_size, eos_id=info.eos_id,
                                 file="" if info.kind == BYTES else TOKENIZER_FILE),
        dtype=dtype, shard_tokens=opts.shard_tokens, max_token_id=max(max_id, 0),
        train=entries["train"], val=entries["val"],
        documents={"train": counts.docs[0], "val": counts.docs[1]}, text_bytes=counts.text_bytes,
        val_fraction=opts.val_fraction, seed=opts.seed,
    )


# --- the workers ---------------------------------------------------------------------------


@contextlib.contextmanager
def _single_threaded_tokenizers() -> Iterator[None]:
    """``tokenizers`` batches use every core unless told otherwise: ``--workers`` means cores."""
    saved = os.environ.get(PARALLELISM_ENV)
    os.environ[PARALLELISM_ENV] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PARALLELISM_ENV, None)
        else:
            os.environ[PARALLELISM_ENV] = saved


def _encoded(tasks: Iterator[tuple[Chunk, ...]], opts: PrepareOptions, tokenizer_text: str,
             eos_id: int) -> Iterator[tuple[tuple[Chunk, ...], EncodedChunk]]:
    """(task, its tokens) in task order; ``workers`` processes, at most 2 tasks each in flight."""
    initargs = (tokenizer_text, eos_id, opts.val_fraction, opts.text_field)
    with _single_threaded_tokenizers():
        init_worker(*initargs)  # here too: a missing package or a bad tokenizer fails before any worker starts
        if opts.workers == 1:  # in this process, on one core like a pool worker
            for task in tasks:
                yield task, work(task)
            return
    # spawn, not fork: a forked child of a process whose tokenizer threads already ran can
    # deadlock; the worker module imports neither torch nor the rest of the node. A worker
    # that dies breaks the pool (BrokenProcessPool) instead of hanging it.
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(opts.workers, mp_context=ctx, initializer=init_worker,
                             initargs=(*initargs, True)) as pool:
        pending: collections.deque[tuple[tuple[Chunk, ...], Future[EncodedChunk]]] = collections.deque()
        try:
            for task in tasks:
                pending.append((task, pool.submit(work, task)))
                if len(pending) >= 2 * opts.workers:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:  # stopped early (--max-mb) or failed: drop the queued tasks
            for _, future in pending:
                future.cancel()
