"""Small corpora for the data tests: generated documents, or a slice of the stdlib's sources."""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

WORDS = ["the", "miner", "trains", "a", "shard", "of", "text", "while", "validators", "score", "every", "window", "and", "the", "chain", "pays", "weights", "emission", "model", "token", "data", "subnet", "gradient", "update", "loss", "falls", "rises", "agree", "hash"]


def document(rng: random.Random, lines: int) -> str:
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + "\n" for _ in range(lines))


def write_corpus(root: Path, files: int = 30, lines: int = 20, seed: int = 0) -> Path:
    """``files`` text files in nested folders, a binary file, a hidden one, and a JSONL file."""
    rng = random.Random(seed)
    for i in range(files):
        path = root / f"part{i % 3}" / f"doc{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document(rng, lines), encoding="utf-8")
    (root / "blob.bin").write_bytes(b"\x00\x01binary" * 50)
    (root / ".hidden.txt").write_text("never read\n", encoding="utf-8")
    rows = [json.dumps({"text": document(rng, 3), "id": i}) for i in range(10)]
    (root / "rows.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def stdlib_slice() -> list[str]:
    """A few stdlib packages (~1 MB of Python): real text a tiny model learns quickly."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return [str(root / name) for name in ("json", "email", "asyncio")]
