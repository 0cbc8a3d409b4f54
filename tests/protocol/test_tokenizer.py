"""Tokenizer identity, the vocabulary rule, and the checks that refuse mismatched data."""

from __future__ import annotations

import json

import pytest

from protocol.data import VOCAB_SIZE
from protocol.model import PRESETS, build_model, model_hash, preset, subnet_model_config
from protocol.subnet import SubnetConfig
from protocol.tokenizer import (
    TokenizerError,
    TokenizerInfo,
    VocabularyError,
    byte_tokenizer,
    check_config_tokenizer,
    check_local_tokenizer,
    file_sha256,
    load_tokenizer_file,
    model_vocab_size,
    parse_tokenizer_json,
    round_vocab,
)


def _tokenizer_json(vocab: dict[str, int], added: list[tuple[str, int]]) -> bytes:
    doc = {"version": "1.0", "added_tokens": [{"id": i, "content": c, "special": True} for c, i in added],
           "model": {"type": "BPE", "vocab": vocab, "merges": []}}
    return json.dumps(doc).encode()


def test_byte_tokenizer_keeps_todays_vocabulary_and_model() -> None:
    info = byte_tokenizer()
    assert (info.kind, info.eos_id, model_vocab_size(info)) == ("bytes", 257, VOCAB_SIZE)
    default = SubnetConfig()
    assert default.tokenizer == "bytes" and default.vocab_size == VOCAB_SIZE
    for name in PRESETS:  # the subnet's model is the preset, unchanged, with the byte tokenizer
        assert subnet_model_config(SubnetConfig(preset=name)) == preset(name)
    assert model_hash(build_model(subnet_model_config(default))) == model_hash(build_model(preset("tiny")))


def test_vocabulary_is_rounded_up_to_64_for_every_preset() -> None:
    assert [round_vocab(n) for n in (1, 64, 65, 50257, 32000)] == [64, 64, 128, 50304, 32000]
    info = TokenizerInfo(kind="hf", sha256="a" * 64, vocab_size=50257, eos_id=50256)
    for name in PRESETS:
        cfg = subnet_model_config(SubnetConfig(preset=name, vocab_size=model_vocab_size(info)))
        assert cfg.vocab_size == 50304 and cfg.dim == PRESETS[name].dim


def test_parse_counts_model_and_added_tokens_and_finds_eos() -> None:
    data = _tokenizer_json({"a": 0, "b": 1, "ab": 2}, [("<|endoftext|>", 3), ("<|pad|>", 4)])
    info = parse_tokenizer_json(data, "t.json")
    assert (info.kind, info.vocab_size, info.eos_id, info.sha256) == ("hf", 5, 3, file_sha256(data))
    llama_like = _tokenizer_json({"<unk>": 0, "<s>": 1, "</s>": 2, "x": 3}, [])
    assert parse_tokenizer_json(llama_like, "l.json").eos_id == 2
    assert parse_tokenizer_json(llama_like, "l.json", eos="<s>").eos_id == 1


@pytest.mark.parametrize("data, match", [
    (b"\xff\xfe", "not a JSON file"),
    (b"[1, 2]", "no 'model' object"),
    (json.dumps({"model": {"vocab": {}}}).encode(), "empty vocabulary"),
    (_tokenizer_json({"a": 0}, []), "no end-of-document token.*--eos"),
    (_tokenizer_json({"a": -1, "<|endoftext|>": 1}, []), "integers"),
])
def test_bad_tokenizer_files_are_named(data: bytes, match: str) -> None:
    with pytest.raises(TokenizerError, match=match) as err:
        parse_tokenizer_json(data, "sub/tok.json")
    assert "sub/tok.json" in str(err.value)


def test_load_tokenizer_file_names_a_missing_file(tmp_path) -> None:
    with pytest.raises(TokenizerError, match="cannot read tokenizer .*missing.json"):
        load_tokenizer_file(tmp_path / "missing.json")


HF = TokenizerInfo(kind="hf", sha256="b" * 64, vocab_size=1000, eos_id=0)


def test_config_check_accepts_the_matching_tokenizer() -> None:
    check_config_tokenizer(HF, tokenizer="tok.json", tokenizer_hash="b" * 64, vocab_size=1024, where="d")
    check_config_tokenizer(HF, tokenizer="tok.json", tokenizer_hash="", vocab_size=1024, where="d")  # devnet
    check_config_tokenizer(byte_tokenizer(), tokenizer="bytes", tokenizer_hash="", vocab_size=264, where="d")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(tokenizer="bytes", tokenizer_hash="", vocab_size=264), TokenizerError, "hf tokenizer.*names tokenizer 'bytes'"),
    (dict(tokenizer="t.json", tokenizer_hash="c" * 64, vocab_size=1024), TokenizerError, "re-run 'swarmtrain data prepare"),
    (dict(tokenizer="t.json", tokenizer_hash="b" * 64, vocab_size=264), VocabularyError, "set vocab_size to 1024"),
])
def test_config_check_refuses_other_tokenizers(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        check_config_tokenizer(HF, where="dataset d", **kwargs)


def test_local_tokenizer_file_must_have_the_pinned_hash(tmp_path) -> None:
    path = tmp_path / "tok.json"
    path.write_bytes(b"{}")
    check_local_tokenizer(path, file_sha256(b"{}"))
    with pytest.raises(TokenizerError, match=f"{path}.*replace it"):
        check_local_tokenizer(path, "d" * 64)
