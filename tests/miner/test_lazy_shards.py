"""A fresh miner on a sharded dataset served over HTTP: it starts its first window after fetching
only the shards that window assigns it, and fetches the next window's while it trains."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from miner.service import Miner, MinerOptions
from miner.state import MinerStateStore
from miner.trainer import InnerTrainer
from node.logs import MetricsWriter, read_metrics
from node.sharded_dataset import ShardedDataset
from protocol.model import subnet_model_config
from protocol.shards import MANIFEST_FILE
from protocol.windows import assigned_samples
from swarmtrain.dataprep.pipeline import PrepareOptions, prepare
from swarmtrain.dataprep.serve import serve_in_thread
from tests.dataprep.corpus_fixtures import write_corpus
from tests.miner.test_service import CFG, MINER_HOTKEY, Client, StillChain


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lazy")
    prepare(PrepareOptions(sources=(str(write_corpus(root / "corpus")),), out=root / "ds", shard_tokens=1024,
                           val_fraction=0.1, workers=1))
    return root / "ds"


class RecordingMiner(Miner):
    """Notes what had been downloaded when each window's training began."""

    seen_at_train: dict[int, tuple[list[str], list[str]]]

    async def train(self, window, indices, report):
        self.seen_at_train[window] = (list(self.dataset.store.downloaded), list(self.server_requests))
        return await super().train(window, indices, report)


def _shards(ds: ShardedDataset, window: int, uid: int) -> list[str]:
    indices = assigned_samples(CFG.seed_bytes, window, uid, CFG.samples_per_window, ds.num_samples(CFG.seq_len))
    return ds.shards_for(indices, CFG.seq_len)


async def test_first_window_waits_only_for_its_own_shards(dataset_dir, tmp_path) -> None:
    with serve_in_thread(dataset_dir) as server:
        ds = ShardedDataset.open(server.url, cache_dir=tmp_path / "cache")
        miner = RecordingMiner(
            chain=StillChain(), wallet=SimpleNamespace(hotkey=SimpleNamespace(ss58_address=MINER_HOTKEY)),
            cfg=CFG, dataset=ds, trainer=InnerTrainer(subnet_model_config(CFG), lr=1e-3),
            store=MinerStateStore(tmp_path / "state"), client=Client(CFG, windows=3),
            metrics=MetricsWriter(tmp_path / "state" / "metrics.jsonl"),
            options=MinerOptions(sync_timeout_s=5, poll_interval_s=0.01),
        )
        miner.seen_at_train, miner.server_requests = {}, server.requests
        await miner.run(max_windows=2)
        requested = list(server.requests)
    first, second, third = (_shards(ds, w, uid=1) for w in range(3))
    assert len(first) <= 2 and len(ds.manifest.train) > 10
    downloaded, requests = miner.seen_at_train[0]
    assert downloaded == first and requests == [MANIFEST_FILE, *first]  # nothing else before training
    records = {r["window"]: r for r in read_metrics(tmp_path / "state" / "metrics.jsonl")}
    assert records[0]["shards_fetched"] == first
    assert records[1]["shards_fetched"] == []  # fetched while window 0 trained
    # window 2's shards were being prefetched when the miner stopped after window 1
    assert set(requested) == {MANIFEST_FILE, *first, *second, *third}
    assert not any(name.startswith("val-") for name in requested)
