"""scripts/bench_data.py runs end to end on a toy corpus (figures are not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.dataprep.corpus_fixtures import write_corpus

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench_data.py"


def test_bench_data_runs_on_a_toy_corpus(tmp_path) -> None:
    corpus = write_corpus(tmp_path / "corpus")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--corpus", str(corpus), "--max-mb", "0.05", "--sample-mb", "0.05",
         "--vocab-size", "300", "--shard-tokens", "1024", "--seq-len", "16", "--window-samples", "8",
         "--workers", "1", "--rate-mbit", "20", "--work-dir", str(tmp_path / "work")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    last = dict(kv.split("=", 1) for kv in proc.stdout.strip().splitlines()[-1].split())
    assert {"prep_mb_s_1", "tokens_per_byte_bpe", "lazy_wait_s", "full_wait_s", "wait_ratio"} <= set(last)
    assert float(last["tokens_per_byte_bytes"]) > float(last["tokens_per_byte_bpe"]) > 0
    assert int(last["lazy_shards"]) < int(last["total_shards"])
