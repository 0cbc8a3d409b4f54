"""A local network on real data: a BPE tokenizer trained on a corpus, the corpus prepared into
shards, and devnet + validator + miner training a model with that vocabulary (small and fast:
one miner, two windows)."""

from __future__ import annotations

import json

import pytest

from node.logs import read_metrics
from protocol.shards import MANIFEST_FILE
from protocol.subnet import SubnetConfig
from swarmtrain.commands.local import subnet_config
from swarmtrain.dataprep.bpe import train_tokenizer
from swarmtrain.dataprep.pipeline import PrepareOptions, prepare
from swarmtrain.dataprep.subnet_fields import dataset_fields
from swarmtrain.local_settings import LocalSettings
from swarmtrain.localnet import MinerSpec
from swarmtrain.localnet_report import build_summary
from tests.dataprep.corpus_fixtures import stdlib_slice
from tests.localnet_fixtures import running_localnet, tiny_subnet

VOCAB = 512
WINDOWS = 2


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("realdata")
    sources = stdlib_slice()
    train_tokenizer(sources, root / "tok.json", vocab_size=VOCAB, sample_bytes=1_000_000)
    prepare(PrepareOptions(sources=tuple(sources), out=root / "ds", tokenizer=str(root / "tok.json"),
                           shard_tokens=1 << 15, val_fraction=0.05, workers=1))
    subnet = tiny_subnet(inner_steps=10, **dataset_fields(str(root / "ds")))
    subnet.save(root / "subnet.json")
    return root, subnet


def test_local_keeps_the_dataset_of_the_subnet_config(prepared) -> None:
    root, subnet = prepared
    assert subnet_config(LocalSettings(subnet_config=root / "subnet.json", preset="tiny")) == subnet
    assert subnet.vocab_size == VOCAB and subnet.tokenizer.endswith("tokenizer.json")


def test_network_trains_a_bpe_model_on_prepared_shards(prepared, tmp_path) -> None:
    root, subnet = prepared
    with running_localnet(tmp_path, subnet=subnet, miners=[MinerSpec("miner1")], windows=WINDOWS,
                          timeout_s=150) as (net, result):
        summary = build_summary(result)
        assert summary["model_hash_agree"] is True, summary["windows"]
        losses = summary["val_loss"]
        assert len(losses) == WINDOWS and losses[-1] < summary["val_loss_initial"], losses
        records = [r for r in read_metrics(net.miner_metrics("miner1")) if r.get("trained")]
        assert records and all(r["loss_first"] < 7.0 for r in records[1:])  # ln(512) = 6.24 at the start
        fetched = {name for r in records for name in r["shards_fetched"]}
        manifest = json.loads((root / "ds" / MANIFEST_FILE).read_text())
        assert fetched and fetched <= {e["file"] for e in manifest["train"]}
        checkpoints = sorted((net.state_dir("validator") / "checkpoints").glob("*.json"))
        model = json.loads(checkpoints[-1].read_text())["config"]
        assert model["vocab_size"] == VOCAB and model["dim"] == 64
        assert SubnetConfig.load(net.subnet_path) == subnet


def test_local_refuses_a_dataset_that_is_not_the_pinned_one(prepared, tmp_path, capsys) -> None:
    from swarmtrain.cli import main

    root, subnet = prepared
    wrong = SubnetConfig.model_validate({**subnet.model_dump(), "dataset_hash": "0" * 64})
    wrong.save(tmp_path / "subnet.json")
    assert main(["local", "--subnet-config", str(tmp_path / "subnet.json"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "error: the manifest at" in err and "pins dataset_hash 0000" in err
    assert not (tmp_path / "out" / "logs").exists()  # nothing was started
