"""swarmtrain data train-tokenizer / prepare / subnet-config: contents, determinism, errors."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from protocol.data import EOS, DataSourceError
from protocol.shards import HEADER_SIZE, MANIFEST_FILE, decode_header, manifest_hash, parse_manifest
from protocol.subnet import SubnetConfig
from swarmtrain.cli import main
from swarmtrain.dataprep.bpe import train_tokenizer
from swarmtrain.dataprep.corpus import CHUNK_BYTES, plan_chunks, read_chunk
from swarmtrain.dataprep.encode import is_val
from swarmtrain.dataprep.pipeline import PrepareOptions, prepare
from tests.dataprep.corpus_fixtures import write_corpus


def _tokens(folder, entries) -> np.ndarray:
    parts = []
    for e in entries:
        data = (folder / e.file).read_bytes()
        width, count = decode_header(data, e.file)
        parts.append(np.frombuffer(data[HEADER_SIZE:], dtype=f"<u{width}"))
        assert count == e.tokens
    return np.concatenate(parts)


def _docs(tokens: np.ndarray, eos: int) -> list[bytes]:
    cuts = np.flatnonzero(tokens == eos)
    assert cuts.size and cuts[-1] == len(tokens) - 1  # every document ends with EOS
    return [tokens[a + 1 : b].astype(np.uint8).tobytes() for a, b in zip([-1, *cuts[:-1]], cuts, strict=True)]


def test_byte_shards_hold_every_document_once_in_its_split(tmp_path) -> None:
    root = write_corpus(tmp_path / "c")
    result = prepare(PrepareOptions(sources=(str(root),), out=tmp_path / "ds", shard_tokens=4096,
                                    val_fraction=0.2, workers=1))
    m = result.manifest
    assert len(m.train) > 2 and all(e.tokens == 4096 for e in m.train[:-1])
    assert result.manifest_hash == manifest_hash((tmp_path / "ds" / MANIFEST_FILE).read_bytes())
    docs = [d for c in plan_chunks([str(root)], CHUNK_BYTES, "swarmtrain") for d in read_chunk(c, "text")]
    for split in ("train", "val"):
        got = _docs(_tokens(tmp_path / "ds", m.shards(split)), EOS)
        want = [t.encode() for k, t in docs if is_val(k, 0.2) == (split == "val")]
        assert collections.Counter(got) == collections.Counter(want) and m.documents[split] == len(want)
    assert sum(m.documents.values()) == 30 + 10  # text files + JSONL rows; no binary, no hidden file
    assert m.text_bytes == sum(len(t.encode()) for _, t in docs)


def test_rerun_gives_identical_bytes_whatever_the_workers(tmp_path) -> None:
    root = write_corpus(tmp_path / "c")
    tok = tmp_path / "tok.json"
    train_tokenizer((str(root),), tok, vocab_size=300)
    opts = dict(sources=(str(root),), tokenizer=str(tok), shard_tokens=512, val_fraction=0.1, chunk_bytes=300)
    a = prepare(PrepareOptions(out=tmp_path / "a", workers=1, **opts))
    b = prepare(PrepareOptions(out=tmp_path / "b", workers=2, **opts))
    assert a.manifest_hash == b.manifest_hash
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and "tokenizer.json" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    again = prepare(PrepareOptions(out=tmp_path / "a", workers=1, **{**opts, "shard_tokens": 4096}))
    assert len(again.manifest.train) < len(a.manifest.train)  # re-preparing replaces the old shards
    assert sorted(p.name for p in (tmp_path / "a").glob("*.tok")) == sorted(
        e.file for e in (*again.manifest.train, *again.manifest.val))


def test_trained_tokenizer_is_deterministic_and_loadable(tmp_path) -> None:
    from tokenizers import Tokenizer

    root = write_corpus(tmp_path / "c")
    a = train_tokenizer((str(root),), tmp_path / "a.json", vocab_size=320, sample_bytes=20_000)
    b = train_tokenizer((str(root),), tmp_path / "b.json", vocab_size=320, sample_bytes=20_000)
    assert a.sha256 == b.sha256 and (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    tok = Tokenizer.from_file(str(tmp_path / "a.json"))
    assert tok.get_vocab_size() == a.vocab_size <= 320
    assert tok.token_to_id("<|endoftext|>") == 0 == a.info.eos_id and tok.token_to_id("<|pad|>") == 1
    text = "the miner trains ünïcödé ✓\n"
    assert tok.decode(tok.encode(text).ids) == text  # byte-level: any text round-trips
    assert a.sample_bytes <= 20_100
    with pytest.raises(ValueError, match="at least 258"):
        train_tokenizer((str(root),), tmp_path / "c.json", vocab_size=100)


def test_bpe_shards_use_the_tokenizer_and_its_eos(tmp_path) -> None:
    from tokenizers import Tokenizer

    root = write_corpus(tmp_path / "c", files=12)
    trained = train_tokenizer((str(root),), tmp_path / "tok.json", vocab_size=400)
    m = prepare(PrepareOptions(sources=(str(root),), out=tmp_path / "ds",
                               tokenizer=str(tmp_path / "tok.json"), val_fraction=0.3, workers=1)).manifest
    assert (m.tokenizer.kind, m.tokenizer.sha256, m.tokenizer.eos_id) == ("hf", trained.sha256, 0)
    tokens = np.concatenate([_tokens(tmp_path / "ds", m.train), _tokens(tmp_path / "ds", m.val)])
    tok = Tokenizer.from_file(str(tmp_path / "tok.json"))
    texts = [tok.decode(d[:-1].tolist()) for d in np.split(tokens, np.flatnonzero(tokens == 0) + 1) if d.size]
    docs = [t for c in plan_chunks([str(root)], CHUNK_BYTES, "swarmtrain") for _, t in read_chunk(c, "text")]
    assert collections.Counter(texts) == collections.Counter(docs)
    assert m.max_token_id < trained.vocab_size


def test_empty_val_split_is_an_error_with_the_fix(tmp_path) -> None:
    root = write_corpus(tmp_path / "c", files=1)
    with pytest.raises(DataSourceError, match="no document went to the val split.*--val-fraction"):
        prepare(PrepareOptions(sources=(str(root / "part0"),), out=tmp_path / "ds", val_fraction=1e-9, workers=1))
    assert not (tmp_path / "ds" / MANIFEST_FILE).exists()


def test_commands_end_to_end(tmp_path, capsys) -> None:
    root = write_corpus(tmp_path / "c")
    tok, ds, cfg = tmp_path / "tok.json", tmp_path / "ds", tmp_path / "subnet.json"
    assert main(["data", "train-tokenizer", str(root), "--out", str(tok), "--vocab-size", "300"]) == 0
    assert main(["data", "prepare", str(root), "--out", str(ds), "--tokenizer", str(tok), "--shard-tokens", "2048",
                 "--val-fraction", "0.2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    digest = manifest_hash((ds / MANIFEST_FILE).read_bytes())
    assert f"dataset_hash={digest}" in out and "tokens_per_byte=" in out
    assert main(["data", "subnet-config", str(ds), "--out", str(cfg), "--preset", "tiny"]) == 0
    config = SubnetConfig.load(cfg)
    manifest = parse_manifest((ds / MANIFEST_FILE).read_bytes(), "m")
    assert (config.dataset_name, config.dataset_hash) == (str(ds.resolve()), digest)
    assert (config.tokenizer, config.tokenizer_hash) == (str((ds / "tokenizer.json").resolve()), manifest.tokenizer.sha256)
    assert config.vocab_size == 320 and json.loads(cfg.read_text())["preset"] == "tiny"


def test_command_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["data", "prepare", str(tmp_path / "none"), "--out", str(tmp_path / "ds"), "--no-progress"]) == 1
    assert "error: corpus source" in capsys.readouterr().err
    assert main(["data", "prepare", str(tmp_path), "--out", str(tmp_path / "ds"),
                 "--tokenizer", str(tmp_path / "missing.json")]) == 1
    assert "cannot read tokenizer" in capsys.readouterr().err


def test_a_worker_error_reaches_the_command_instead_of_hanging(tmp_path) -> None:
    root = write_corpus(tmp_path / "c")
    (root / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n', encoding="utf-8")
    with pytest.raises(DataSourceError, match="bad.jsonl: the line at byte 17 is not JSON"):
        prepare(PrepareOptions(sources=(str(root),), out=tmp_path / "ds", workers=2, chunk_bytes=2000))
    assert not (tmp_path / "ds" / MANIFEST_FILE).exists()


def test_data_command_parser_stays_light() -> None:
    import subprocess
    import sys

    code = ("import argparse, sys; from swarmtrain.commands import data; p = argparse.ArgumentParser(); "
            "data.add_arguments(p); print('torch' in sys.modules, 'tokenizers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr
