"""Tokenizer, token datasets, shard loaders, the cached built-in corpus and dataset identity."""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol import data
from protocol.data import (
    BOS,
    EOS,
    PAD,
    VOCAB_SIZE,
    DatasetMismatchError,
    DatasetSpec,
    DataSourceError,
    TokenDataset,
    builtin_corpus,
    decode,
    encode,
    load_hf_dataset,
    load_token_shards,
    open_dataset,
    verify_dataset,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARMTRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def toy(n_train: int = 100, n_val: int = 30) -> TokenDataset:
    return TokenDataset.from_arrays(
        "toy", np.arange(n_train, dtype=np.uint16), np.arange(1000, 1000 + n_val, dtype=np.uint16)
    )


# --- tokenizer ---


def test_special_ids_fit_the_vocabulary() -> None:
    assert (BOS, EOS, PAD) == (256, 257, 258)
    assert VOCAB_SIZE % 8 == 0 and VOCAB_SIZE > PAD


@given(st.text())
def test_tokenizer_round_trip(text: str) -> None:
    ids = encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert decode(ids) == text
    assert decode(encode(text, bos=True, eos=True)) == text


def test_encode_frames_and_decode_drops_specials() -> None:
    assert encode("hé", bos=True, eos=True) == [BOS, 104, 0xC3, 0xA9, EOS]
    assert decode([104, PAD, 105, EOS]) == "hi"
    assert decode([0xFF]) == "\ufffd"


# --- TokenDataset ---


def test_num_samples_and_batch_values() -> None:
    ds = toy()
    assert ds.num_samples(8) == 12  # (100 - 1) // 8
    assert ds.num_samples(8, "val") == 3
    b = ds.batch([0, 5, 11], seq_len=8)
    assert b.dtype == torch.long and b.shape == (3, 9)
    assert b[1].tolist() == list(range(40, 49))
    assert b[2, -1].item() == 96  # last sample ends inside the array
    assert ds.batch([2], 8, split="val")[0].tolist() == list(range(1016, 1025))
    assert ds.batch([], 8).shape == (0, 9)


@pytest.mark.parametrize("indices", [[12], [-1], [0, 99]])
def test_batch_rejects_out_of_range(indices: list[int]) -> None:
    with pytest.raises(IndexError, match="out of range"):
        toy().batch(indices, seq_len=8)


@pytest.mark.parametrize("indices", [[1.5], [True], [[1, 2]]])
def test_batch_rejects_non_integer_indices(indices: list) -> None:
    with pytest.raises(ValueError, match="flat sequence of ints"):
        toy().batch(indices, seq_len=8)


def test_batch_accepts_arrays_and_tensors() -> None:
    ref = toy().batch([1, 2], 8)
    assert torch.equal(toy().batch(np.array([1, 2], dtype=np.uint32), 8), ref)
    assert torch.equal(toy().batch(torch.tensor([1, 2]), 8), ref)


def test_bad_split_and_seq_len() -> None:
    with pytest.raises(ValueError, match="split"):
        toy().num_samples(8, "test")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seq_len"):
        toy().num_samples(0)


def test_dataset_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError):
        TokenDataset("x", np.zeros((2, 2), dtype=np.uint16), np.zeros(3, dtype=np.uint16), "")
    with pytest.raises(ValueError):
        TokenDataset("x", np.zeros(4, dtype=np.float32), np.zeros(3, dtype=np.uint16), "")


# --- content hash ---


def test_hash_is_stable_and_sensitive() -> None:
    a = toy()
    assert a.content_hash == toy().content_hash
    train = np.arange(100, dtype=np.uint16)
    train[50] += 1
    changed = TokenDataset.from_arrays("toy", train, a.val)
    assert changed.content_hash != a.content_hash
    # moving the split point changes the identity even with the same token stream
    stream = np.concatenate([a.train, a.val])
    assert TokenDataset.from_arrays("toy", stream[:99], stream[99:]).content_hash != a.content_hash
    assert toy(100, 29).content_hash != a.content_hash


def test_hash_ignores_name_but_not_dtype() -> None:
    a = toy()
    assert TokenDataset.from_arrays("other", a.train, a.val).content_hash == a.content_hash
    wide = TokenDataset.from_arrays("toy", a.train.astype(np.uint32), a.val.astype(np.uint32))
    assert wide.content_hash != a.content_hash


def test_verify_dataset() -> None:
    ds = toy()
    verify_dataset(ds, DatasetSpec(name="toy", content_hash=ds.content_hash))
    verify_dataset(ds, DatasetSpec(name="toy", content_hash=""))  # unpinned (devnets)
    wrong = "0" * 64
    with pytest.raises(DatasetMismatchError) as err:
        verify_dataset(ds, DatasetSpec(name="builtin", content_hash=wrong))
    msg = str(err.value)
    assert ds.content_hash in msg and wrong in msg and "Python" in msg


def test_dataset_spec_is_strict() -> None:
    with pytest.raises(ValidationError):
        DatasetSpec(name="x", content_hash="XYZ")
    with pytest.raises(ValidationError):
        DatasetSpec(name="x", content_hash="a" * 64, extra=1)  # type: ignore[call-arg]


# --- shard loaders ---


def test_load_npy_file(tmp_path: Path) -> None:
    tokens = np.arange(2000, dtype=np.uint16) % 300
    np.save(tmp_path / "toks.npy", tokens)
    ds = load_token_shards(tmp_path / "toks.npy")
    assert len(ds.train) == 1900 and len(ds.val) == 100
    assert np.array_equal(np.concatenate([ds.train, ds.val]), tokens)
    assert ds.name == "toks.npy"


def test_load_bin_uint16_and_uint32(tmp_path: Path) -> None:
    tokens = np.arange(1000, dtype=np.uint32) * 70_000
    tokens.astype("<u4").tofile(tmp_path / "wide.bin")
    ds = load_token_shards(tmp_path / "wide.bin", dtype="uint32", val_fraction=0.1)
    assert ds.train.dtype == np.uint32 and len(ds.val) == 100
    assert int(ds.val[-1]) == 999 * 70_000
    (np.arange(10, dtype="<u2")).tofile(tmp_path / "narrow.bin")
    assert load_token_shards(tmp_path / "narrow.bin").train.tolist() == list(range(9))


def test_load_nanogpt_directory(tmp_path: Path) -> None:
    np.arange(50, dtype="<u2").tofile(tmp_path / "train.bin")
    np.arange(7, dtype="<u2").tofile(tmp_path / "val.bin")
    ds = load_token_shards(tmp_path)
    assert (len(ds.train), len(ds.val)) == (50, 7)


def test_load_directory_of_shards_in_sorted_order(tmp_path: Path) -> None:
    np.save(tmp_path / "b.npy", np.full(100, 2, dtype=np.uint16))
    np.save(tmp_path / "a.npy", np.full(100, 1, dtype=np.uint16))
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_token_shards(tmp_path, val_fraction=0.5)
    assert set(ds.train.tolist()) == {1} and set(ds.val.tolist()) == {2}


def test_int_arrays_are_normalized(tmp_path: Path) -> None:
    np.save(tmp_path / "i64.npy", np.arange(100, dtype=np.int64))
    ds = load_token_shards(tmp_path / "i64.npy")
    assert ds.train.dtype == np.uint16
    assert ds.content_hash == load_token_shards(_save(tmp_path, np.arange(100, dtype=np.uint16))).content_hash


def _save(tmp_path: Path, arr: np.ndarray) -> Path:
    path = tmp_path / "u16.npy"
    np.save(path, arr)
    return path


@pytest.mark.parametrize(
    "setup, match",
    [
        (lambda p: np.save(p / "f.npy", np.zeros((3, 3), dtype=np.uint16)), "1-D"),
        (lambda p: np.save(p / "f.npy", np.zeros(3, dtype=np.float32)), "integer"),
        (lambda p: np.save(p / "f.npy", np.array([-1, 2])), r"\[0, 2\*\*32\)"),
        (lambda p: (p / "f.npy").write_bytes(b"garbage"), "cannot read"),
        (lambda p: (p / "f.bin").write_bytes(b"abc"), "multiple of 2"),
        (lambda p: (p / "f.txt").write_text("x"), "unsupported"),
    ],
)
def test_bad_shards_raise_data_source_error(tmp_path: Path, setup, match: str) -> None:
    setup(tmp_path)
    (path,) = tmp_path.iterdir()
    with pytest.raises(DataSourceError, match=match):
        load_token_shards(path)


def test_missing_and_empty_sources(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        load_token_shards(tmp_path / "nope.npy")
    with pytest.raises(DataSourceError, match="no .npy or .bin"):
        load_token_shards(tmp_path)
    with pytest.raises(DataSourceError, match="not 'builtin'"):
        open_dataset(str(tmp_path / "missing"))
    (tmp_path / "x.bin").write_bytes(b"\0\0")
    with pytest.raises(DataSourceError, match="dtype"):
        load_token_shards(tmp_path / "x.bin", dtype="int8")


def test_open_dataset_path(tmp_path: Path) -> None:
    np.save(tmp_path / "t.npy", np.arange(300, dtype=np.uint16))
    assert open_dataset(str(tmp_path / "t.npy")).content_hash == load_token_shards(tmp_path / "t.npy").content_hash


# --- built-in corpus ---


def test_builtin_corpus_is_cached_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = builtin_corpus(max_bytes=300_000)
    (cached,) = (tmp_path / "cache").glob("builtin-*-300000.npy")
    mtime = cached.stat().st_mtime_ns

    def no_rebuild(max_bytes: int) -> np.ndarray:
        raise AssertionError("rebuilt despite a cache")

    monkeypatch.setattr(data, "build_builtin_tokens", no_rebuild)
    second = builtin_corpus(max_bytes=300_000)
    assert second.content_hash == first.content_hash
    assert cached.stat().st_mtime_ns == mtime
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_builtin_corpus_shape(tmp_path: Path) -> None:
    ds = open_dataset("builtin", cache_dir=tmp_path / "c")
    total = len(ds.train) + len(ds.val)
    assert 1_000_000 < total <= data.DEFAULT_MAX_BYTES
    assert ds.train[-1] == EOS and ds.val[-1] == EOS  # split at a document boundary
    assert 0.03 < len(ds.val) / total < 0.08
    assert ds.max_token() == EOS and ds.train.dtype == np.uint16
    assert "def " in decode(ds.train[:5000].tolist())
    assert ds.content_hash == builtin_corpus(tmp_path / "c").content_hash


def test_builtin_skips_tests_and_site_packages() -> None:
    parts = {part for p in data.stdlib_sources() for part in p.parts}
    assert not parts & {"site-packages", "test", "tests", "idle_test"}
    assert data.stdlib_sources() == data.stdlib_sources()


def test_corrupt_cache_is_rebuilt(tmp_path: Path) -> None:
    good = builtin_corpus(tmp_path, max_bytes=100_000)
    (cached,) = tmp_path.glob("builtin-*.npy")
    cached.write_bytes(b"truncated")
    assert builtin_corpus(tmp_path, max_bytes=100_000).content_hash == good.content_hash


def test_pack_documents_keeps_whole_documents() -> None:
    toks = data._pack_documents([b"ab", b"cde", b"fghij"], max_bytes=8)
    assert decode(toks.tolist()) == "abcde" and toks.tolist().count(EOS) == 2
    with pytest.raises(DataSourceError):
        data._pack_documents([b"toolong"], max_bytes=3)


# --- Hugging Face extra ---


def test_hf_without_extra_raises_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):
        if name == "datasets":
            raise ImportError("No module named 'datasets'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DataSourceError, match=r"pip install 'swarmtrain\[hf\]'"):
        load_hf_dataset("some/corpus")
    with pytest.raises(DataSourceError, match="swarmtrain"):
        open_dataset("hf:some/corpus")


def test_hf_offline_error_and_tokenization(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys
    import types

    fake = types.ModuleType("datasets")

    def offline(name: str, split: str, streaming: bool):
        raise ConnectionError("no network")

    fake.load_dataset = offline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DataSourceError, match="ConnectionError"):
        load_hf_dataset("some/corpus", cache_dir=tmp_path)

    rows = [{"text": "hello"}, {"text": "world"}] * 10
    fake.load_dataset = lambda name, split, streaming: iter(rows)  # type: ignore[attr-defined]
    ds = open_dataset("hf:some/corpus:train", cache_dir=tmp_path)
    assert ds.name == "hf:some/corpus"
    assert decode(np.concatenate([ds.train, ds.val]).tolist()) == "helloworld" * 10
    assert os.listdir(tmp_path)  # cached for the next start


def test_docstring_examples() -> None:
    import doctest

    assert doctest.testmod(data).failed == 0
