"""Checkpoint store: retention; torn manifests ignored (crash-safe writes: tests/protocol/test_files.py)."""

from __future__ import annotations

import json

import pytest

from node.checkpoints import CheckpointStore
from node.logs import MetricsWriter, progress_line, read_metrics


def test_checkpoint_round_trip_and_retention(tmp_path):
    store = CheckpointStore(tmp_path, keep_checkpoints=2, keep_aggregates=3)
    assert store.latest_checkpoint() is None
    for w in (0, 5, 10):
        manifest = store.put_checkpoint(w, f"data{w}".encode(), {"model_hash": f"h{w}"})
        assert manifest["size"] == len(f"data{w}")
    assert store.checkpoint_windows() == [5, 10]
    assert store.latest_checkpoint() == 10
    assert store.checkpoint_path(10).read_bytes() == b"data10"
    assert store.get_manifest(10)["model_hash"] == "h10"
    assert store.get_manifest(0) is None and not store.checkpoint_path(0).exists()
    for w in range(6):
        store.put_aggregate(w, bytes([w]))
    assert [w for w in range(6) if store.get_aggregate(w) is not None] == [3, 4, 5]
    assert store.get_aggregate(5) == b"\x05" and store.get_aggregate(1) is None


def test_torn_checkpoint_is_not_latest(tmp_path):
    store = CheckpointStore(tmp_path)
    store.put_checkpoint(1, b"one", {})
    store.put_checkpoint(2, b"two", {})
    store.checkpoint_path(2).write_bytes(b"tw")  # size no longer matches the manifest
    assert store.latest_checkpoint() == 1
    store.manifest_path(1).write_text("{not json")
    assert store.latest_checkpoint() is None
    # a new store over the same root sees the same state (restart)
    assert CheckpointStore(tmp_path).checkpoint_windows() == []


def test_retention_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        CheckpointStore(tmp_path, keep_checkpoints=0)


def test_metrics_jsonl_skips_torn_line(tmp_path):
    writer = MetricsWriter(tmp_path / "m" / "metrics.jsonl", clock=lambda: 1.0)
    writer.write({"window": 0, "val_loss": 5.5})
    writer.write({"window": 1, "val_loss": 5.0})
    with open(writer.path, "a") as fh:
        fh.write('{"window": 2, "val')
    records = read_metrics(writer.path)
    assert [r["window"] for r in records] == [0, 1]
    assert records[0]["ts"] == 1.0
    assert json.loads(writer.path.read_text().splitlines()[1])["val_loss"] == 5.0
    assert read_metrics(tmp_path / "missing.jsonl") == []


def test_progress_line():
    assert progress_line("window", w=3, loss=1.234567) == "window w=3 loss=1.235"
