"""Text sources of ``swarmtrain data``: files and folders, JSONL, Hugging Face datasets.

A corpus is cut into *chunks* of about ``chunk_bytes`` that workers read on their own:

* a text file: byte ranges cut at line ends; each range is one document;
* a ``.jsonl`` file: byte ranges cut at line ends; each line's ``text_field`` is a document;
* a ``.gz`` file (e.g. man pages): one chunk, decompressed by the worker;
* ``hf:NAME[:SPLIT]``: rows of a Hugging Face dataset, streamed in order (needs the ``hf``
  extra and network access).

Folders are walked in sorted order (hidden entries skipped, symlinked folders not
followed); a file with a NUL byte in its first 8 KiB is binary and skipped. File chunks
are shuffled with the seed, so shards mix documents from the whole corpus; a document's
key (its source number, relative path and, for JSONL, the line's byte offset) decides
its split. Everything depends only on the files and the arguments: the same command
gives the same chunks, documents and keys.

Example:
    >>> chunks = plan_chunks(["docs"], chunk_bytes=CHUNK_BYTES, seed="swarmtrain")
    >>> docs = read_chunk(chunks[0], text_field="text")   # [(key, text), ...]
"""

from __future__ import annotations

import gzip
import json
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.errors import DataSourceError

CHUNK_BYTES = 1 << 20  # file pieces (and prepare's tasks): the unit of work and of shuffling
BINARY_PROBE = 8192
MAX_GZ_BYTES = 1 << 30  # decompressed size of one .gz file


@dataclass(frozen=True)
class Chunk:
    """A piece of the corpus one worker reads: a byte range of a file, or a batch of texts."""

    kind: str  # "text", "jsonl", "gz-text", "gz-jsonl" or "rows"
    key: str  # "<source number>/<relative path>" (or "hf:<name>" for rows)
    path: str = ""
    start: int = 0
    length: int = 0  # bytes of the file (the compressed size for .gz); progress counts these
    rows: tuple[str, ...] = ()
    first_row: int = 0


def plan_chunks(sources: Sequence[str], chunk_bytes: int, seed: str) -> list[Chunk]:
    """Every file chunk of ``sources`` (``hf:`` sources excluded), shuffled with ``seed``."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    chunks: list[Chunk] = []
    for number, source in enumerate(sources):
        if source.startswith("hf:"):
            continue
        for rel, path in _files(Path(source)):
            chunks.extend(_file_chunks(f"{number}/{rel}", path, chunk_bytes))
    random.Random(seed).shuffle(chunks)
    return chunks


def hf_sources(sources: Sequence[str]) -> list[str]:
    return [s for s in sources if s.startswith("hf:")]


def _files(root: Path) -> list[tuple[str, Path]]:
    """(relative path, path) of the regular files under ``root`` (or ``root`` itself), sorted."""
    if root.is_file():
        return [(root.name, root)]
    if not root.is_dir():
        raise DataSourceError(f"corpus source {root} is neither a file, a folder nor 'hf:NAME'")
    found = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not followed
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _file_chunks(key: str, path: Path, chunk_bytes: int) -> list[Chunk]:
    size = path.stat().st_size
    if size == 0:
        return []
    jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
    if path.suffix == ".gz":
        return [Chunk("gz-jsonl" if jsonl else "gz-text", key, str(path), 0, size)]
    kind = "jsonl" if jsonl else "text"
    return [Chunk(kind, key, str(path), start, min(chunk_bytes, size - start)) for start in range(0, size, chunk_bytes)]


def hf_chunks(source: str, text_field: str, chunk_bytes: int) -> Iterator[Chunk]:
    """Rows of ``hf:NAME[:SPLIT]`` in the dataset's order, batched into chunks."""
    name, _, split = source[3:].partition(":")
    try:
        import datasets  # optional extra, imported only when asked for
    except ImportError as e:
        raise DataSourceError(f"source {source!r} needs the 'datasets' package: pip install 'swarmtrain[hf]'") from e
    rows: list[str] = []
    size = first = 0
    for i, row in enumerate(datasets.load_dataset(name, split=split or "train", streaming=True)):
        if text_field not in row:
            raise DataSourceError(f"rows of {source!r} have no text field {text_field!r}: pass --text-field")
        rows.append(str(row[text_field]))
        size += len(rows[-1])
        if size >= chunk_bytes:
            yield Chunk("rows", source, rows=tuple(rows), first_row=first, length=size)
            rows, size, first = [], 0, i + 1
    if rows:
        yield Chunk("rows", source, rows=tuple(rows), first_row=first, length=size)


# --- reading a chunk (in a worker) --------------------------------------------------------


def read_chunk(chunk: Chunk, text_field: str) -> list[tuple[str, str]]:
    """The chunk's documents as (key, text); [] for a binary file."""
    if chunk.kind == "rows":
        return [(f"{chunk.key}:{chunk.first_row + i}", text) for i, text in enumerate(chunk.rows)]
    if chunk.kind.startswith("gz-"):
        data, base = _read_gz(chunk.path), 0
    else:
        if _is_binary(chunk.path):
            return []
        data, base = _read_lines(chunk.path, chunk.start, chunk.length), chunk.start
    if _is_binary_bytes(data[:BINARY_PROBE]):
        return []
    if chunk.kind.endswith("jsonl"):
        return _jsonl_docs(chunk, data, base, text_field)
    text = data.decode("utf-8", errors="replace")
    return [(chunk.key, text)] if text.strip() else []


def _read_lines(path: str, start: int, length: int) -> bytes:
    """Bytes of the lines that begin in ``[start, start + length)``: a range that starts inside
    a line leaves it to the previous range, and a range ends at the end of its last line."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # finish the line the previous range owns
        begin = f.tell()
        data = f.read(max(0, start + length - begin))
        if data and not data.endswith(b"\n"):
            data += f.readline()
    return data


def _read_gz(path: str) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_GZ_BYTES + 1)
    except (OSError, EOFError) as e:
        raise DataSourceError(f"cannot decompress {path}: {e}") from e
    if len(data) > MAX_GZ_BYTES:
        raise DataSourceError(f"{path} decompresses to over {MAX_GZ_BYTES} bytes: unpack it first")
    return data


def _is_binary(path: str) -> bool:
    with open(path, "rb") as f:
        return _is_binary_bytes(f.read(BINARY_PROBE))


def _is_binary_bytes(head: bytes) -> bool:
    return b"\x00" in head


def _jsonl_docs(chunk: Chunk, data: bytes, base: int, text_field: str) -> list[tuple[str, str]]:
    docs = []
    offset = base
    for line in data.splitlines(keepends=True):
        if line.strip():
            docs.append((f"{chunk.key}:{offset}", _json_text(line, chunk, offset, text_field)))
        offset += len(line)
    return docs


def _json_text(line: bytes, chunk: Chunk, offset: int, text_field: str) -> str:
    try:
        row = json.loads(line)
    except ValueError as e:
        raise DataSourceError(f"{chunk.path}: the line at byte {offset} is not JSON ({e}); fix or drop it") from e
    if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
        raise DataSourceError(f"{chunk.path}: the line at byte {offset} has no string field {text_field!r}: "
                              "pass the right --text-field")
    return row[text_field]
