"""Sharded datasets: samples by (shard, offset), fetching over HTTP, verification, the cache bound,
and the start-up checks of node.subnet_setup."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from node.shard_sources import ShardFetchError
from node.sharded_dataset import ShardedDataset
from node.subnet_setup import subnet_dataset
from protocol.data import DatasetMismatchError
from protocol.shards import HEADER_SIZE, MANIFEST_FILE, ShardError, SplitLayout
from protocol.subnet import SubnetConfig
from protocol.tokenizer import TokenizerError, VocabularyError
from protocol.windows import Population
from swarmtrain.dataprep.bpe import train_tokenizer
from swarmtrain.dataprep.pipeline import PrepareOptions, prepare
from swarmtrain.dataprep.serve import serve_in_thread
from swarmtrain.dataprep.subnet_fields import dataset_fields
from tests.dataprep.corpus_fixtures import write_corpus

SEQ = 16


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """Byte-tokenized shards of 1024 tokens (dozens of train shards)."""
    root = tmp_path_factory.mktemp("sharded")
    corpus = write_corpus(root / "corpus")
    prepare(PrepareOptions(sources=(str(corpus),), out=root / "ds", shard_tokens=1024, val_fraction=0.1, workers=1))
    return root / "ds"


def _raw(folder, entry) -> np.ndarray:
    return np.frombuffer((folder / entry.file).read_bytes()[HEADER_SIZE:], dtype="<u2")


def test_samples_come_from_their_shard(dataset_dir, tmp_path) -> None:
    ds = ShardedDataset.open(str(dataset_dir), cache_dir=tmp_path)
    n = ds.num_samples(SEQ)
    assert isinstance(n, Population) and n.page == (1024 - 1) // SEQ and len(ds.manifest.train) > 10
    layout = SplitLayout.build(ds.manifest.train, SEQ, 1024)
    picks = [0, 1, n.page, int(n) - 1]
    batch = ds.batch(picks, SEQ)
    assert batch.shape == (4, SEQ + 1) and batch.dtype.is_signed
    for row, i in zip(batch, picks, strict=True):
        shard, start = layout.locate(i)
        assert row.tolist() == _raw(dataset_dir, ds.manifest.train[shard])[start : start + SEQ + 1].tolist()
    assert ds.shards_for(picks, SEQ) == [ds.manifest.train[0].file, ds.manifest.train[1].file, ds.manifest.train[-1].file]
    assert ds.num_samples(SEQ, "val") > 0 and ds.batch([0], SEQ, "val").shape == (1, SEQ + 1)
    assert ds.max_token() == ds.manifest.max_token_id <= 257


def test_http_fetches_only_the_shards_asked_for_and_caches_them(dataset_dir, tmp_path) -> None:
    with serve_in_thread(dataset_dir) as server:
        ds = ShardedDataset.open(server.url, cache_dir=tmp_path)
        assert server.requests == [MANIFEST_FILE]
        page = ds.num_samples(SEQ).page
        second = ds.manifest.train[1].file
        assert ds.prefetch([page, page + 3], SEQ) == [second]
        assert ds.prefetch([page + 5], SEQ) == []  # local now
        ds.batch([page + 1, page + 2], SEQ)
        assert server.requests == [MANIFEST_FILE, second]
        again = ShardedDataset.open(server.url + MANIFEST_FILE, cache_dir=tmp_path)  # a restarted node
        assert again.content_hash == ds.content_hash
        assert again.batch([page], SEQ).tolist() == ds.batch([page], SEQ).tolist()
        assert server.requests == [MANIFEST_FILE, second, MANIFEST_FILE]  # verified from the cache
        assert again.store.downloaded == []


def test_a_shard_that_differs_from_the_manifest_is_refused_and_discarded(dataset_dir, tmp_path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    for path in dataset_dir.iterdir():
        (served / path.name).write_bytes(path.read_bytes())
    entry_file = "train-00002.tok"
    data = bytearray((served / entry_file).read_bytes())
    data[HEADER_SIZE + 5] ^= 1  # one bit of one token
    (served / entry_file).write_bytes(bytes(data))
    with serve_in_thread(served) as server:
        ds = ShardedDataset.open(server.url, cache_dir=tmp_path / "cache")
        index = 2 * ds.num_samples(SEQ).page
        with pytest.raises(ShardError, match=rf"{entry_file} has sha256 .*the manifest lists .*download was discarded"):
            ds.batch([index], SEQ)
        assert list((tmp_path / "cache").rglob("*")) == [p for p in (tmp_path / "cache").rglob("*") if p.is_dir()]
        (served / entry_file).write_bytes(data[:100])  # truncated on the server
        with pytest.raises(ShardError, match="truncated"):
            ds.batch([index], SEQ)
        (served / entry_file).unlink()
        with pytest.raises(ShardFetchError, match="HTTP 404"):
            ds.batch([index], SEQ)


def test_local_shards_are_verified_in_place(dataset_dir, tmp_path) -> None:
    local = tmp_path / "ds"
    local.mkdir()
    for path in dataset_dir.iterdir():
        (local / path.name).write_bytes(path.read_bytes())
    ds = ShardedDataset.open(str(local), cache_dir=tmp_path / "cache")
    with open(local / "train-00001.tok", "r+b") as f:
        f.truncate(HEADER_SIZE + 10)
    with pytest.raises(ShardError, match=rf"{local / 'train-00001.tok'} is truncated.*re-run 'swarmtrain data prepare'"):
        ds.batch([ds.num_samples(SEQ).page], SEQ)
    (local / "train-00003.tok").write_bytes((local / "train-00004.tok").read_bytes())
    with pytest.raises(ShardError, match="sha256.*restore the file"):
        ds.batch([3 * ds.num_samples(SEQ).page], SEQ)
    (local / "train-00005.tok").unlink()
    with pytest.raises(ShardFetchError, match="does not exist.*incomplete"):
        ds.batch([5 * ds.num_samples(SEQ).page], SEQ)


def test_cache_stays_within_its_bound_but_keeps_the_last_two_requests(dataset_dir, tmp_path, caplog) -> None:
    with serve_in_thread(dataset_dir) as server:
        shard_bytes = ShardedDataset.open(server.url, cache_dir=tmp_path).manifest.train[0].bytes
        ds = ShardedDataset.open(server.url, cache_dir=tmp_path, cache_bytes=2 * shard_bytes)
        page = ds.num_samples(SEQ).page
        for k in range(4):
            ds.batch([k * page], SEQ)
        names = [e.file for e in ds.manifest.train]
        assert sorted(p.name for p in ds.store.cache_dir.iterdir()) == names[2:4]
        with caplog.at_level(logging.WARNING, logger="swarmtrain.data"):
            rows = ds.batch([4 * page, 5 * page, 6 * page], SEQ)  # needs 3 shards at once
        assert rows.shape[0] == 3 and "over its" in caplog.text
        assert ds.store.cached_bytes() == 4 * shard_bytes  # and the previous request's shard
        ds.batch([0], SEQ)  # evicted earlier: fetched again
        ds.batch([page], SEQ)
        assert sorted(p.name for p in ds.store.cache_dir.iterdir()) == names[0:2]


def test_other_data_than_the_pinned_manifest_is_refused(dataset_dir, tmp_path) -> None:
    with pytest.raises(DatasetMismatchError, match=f"manifest at {dataset_dir}.*has hash .*pins dataset_hash {'e' * 64}"):
        ShardedDataset.open(str(dataset_dir), expected_hash="e" * 64, cache_dir=tmp_path)


def test_subnet_start_checks_tokenizer_and_vocabulary(dataset_dir, tmp_path) -> None:
    fields = dataset_fields(str(dataset_dir))
    assert fields["tokenizer"] == "bytes" and fields["vocab_size"] == 264
    ds = subnet_dataset(SubnetConfig(**fields))
    assert ds.content_hash == fields["dataset_hash"]
    tok = tmp_path / "tok.json"
    trained = train_tokenizer((str(dataset_dir.parent / "corpus"),), tok, vocab_size=300)
    with pytest.raises(TokenizerError, match="bytes tokenizer but the subnet config names tokenizer"):
        subnet_dataset(SubnetConfig(**{**fields, "tokenizer": str(tok), "tokenizer_hash": trained.sha256}))
    with pytest.raises(VocabularyError, match="set vocab_size to 264"):
        subnet_dataset(SubnetConfig(**{**fields, "vocab_size": 320}))
    with pytest.raises(TokenizerError, match="byte.*names tokenizer"):
        subnet_dataset(SubnetConfig(dataset_name="builtin", tokenizer=str(tok), vocab_size=320))


def test_bpe_dataset_needs_the_same_tokenizer_and_a_large_enough_model(dataset_dir, tmp_path) -> None:
    tok, other = tmp_path / "tok.json", tmp_path / "other.json"
    train_tokenizer((str(dataset_dir.parent / "corpus"),), tok, vocab_size=300)
    train_tokenizer((str(dataset_dir.parent / "corpus"),), other, vocab_size=290)
    prepare(PrepareOptions(sources=(str(dataset_dir.parent / "corpus"),), out=tmp_path / "bpe",
                           tokenizer=str(tok), shard_tokens=1024, val_fraction=0.1, workers=1))
    fields = dataset_fields(str(tmp_path / "bpe"))
    assert fields["vocab_size"] == 320 and fields["tokenizer"].endswith("tokenizer.json")
    subnet_dataset(SubnetConfig(**fields))
    other_hash = dataset_fields(str(tmp_path / "bpe"), tokenizer=str(tok))["tokenizer_hash"]
    assert other_hash == fields["tokenizer_hash"]
    with pytest.raises(TokenizerError, match="the subnet config pins tokenizer_hash"):
        subnet_dataset(SubnetConfig(**{**fields, "tokenizer_hash": "f" * 64}))
    with pytest.raises(TokenizerError, match=f"tokenizer file {other} has sha256"):
        subnet_dataset(SubnetConfig(**{**fields, "tokenizer": str(other)}))


def test_old_style_token_files_must_fit_the_vocabulary(tmp_path) -> None:
    path = tmp_path / "tokens.npy"
    np.save(path, np.arange(1000, dtype=np.uint16))
    with pytest.raises(VocabularyError, match="token id 999.*vocabulary has 264.*at least 1000"):
        subnet_dataset(SubnetConfig(dataset_name=str(path)))
    assert subnet_dataset(SubnetConfig(dataset_name=str(path), vocab_size=1024)).max_token() == 999
