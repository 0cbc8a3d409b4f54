"""Hugging Face interop: what we export, transformers loads with the same logits, and back.

The logits are compared on sequences long enough for RoPE to matter, with GQA (fewer kv
heads than query heads), non-default RMSNorm eps and RoPE theta, and perturbed norm weights,
so a wrong rotary layout, head grouping or eps shows up as a difference.
"""

from __future__ import annotations

import json

import pytest
import torch

from node.hf_interop import HfInteropError, export_hf, load_hf_causal_lm
from node.model_file import load_model_file
from protocol.model import ModelConfig, build_model, model_hash

transformers = pytest.importorskip("transformers")

TOL = 1e-4
CFG = ModelConfig(name="t", vocab_size=264, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=176,
                  max_seq_len=128, rope_theta=5000.0, norm_eps=1e-6)


def _model(cfg: ModelConfig = CFG):
    model = build_model(cfg, seed=7)
    with torch.no_grad():  # norms away from 1, so a misplaced norm weight shows
        gen = torch.Generator().manual_seed(1)
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _tokens(vocab: int, n: int = 120) -> torch.Tensor:
    return torch.randint(0, vocab, (2, n), generator=torch.Generator().manual_seed(2))


def test_exported_model_loads_in_transformers_with_our_logits(tmp_path):
    ours = _model()
    out = export_hf(ours.state_dict(), CFG, tmp_path / "hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert type(hf).__name__ == "LlamaForCausalLM"
    idx = _tokens(CFG.vocab_size)
    with torch.no_grad():
        diff = (hf(idx).logits - ours(idx)).abs().max().item()
    assert diff <= TOL, diff
    assert not hf.config.tie_word_embeddings and hf.config.num_key_value_heads == 2


def test_exported_byte_tokenizer_is_a_fast_tokenizer_of_utf8_bytes(tmp_path):
    out = export_hf(_model().state_dict(), CFG, tmp_path / "hf")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "héllo, wörld\n\tdef f(): return '✓'"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))  # no BOS added, one id per byte
    assert tok.decode(ids) == text
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == (257, 258, 256)
    assert tok.is_fast


def test_a_transformers_llama_with_tied_embeddings_imports_with_its_logits(tmp_path):
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.add_(0.2 * torch.randn_like(p))
    hf.save_pretrained(tmp_path / "native")
    ours, cfg = load_hf_causal_lm(tmp_path / "native")
    assert (cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size, cfg.norm_eps) == (6, 2, 300, 1e-5)
    idx = _tokens(300)
    with torch.no_grad():
        diff = (ours(idx) - hf(idx).logits).abs().max().item()
    assert diff <= TOL, diff


def test_export_and_import_commands_round_trip_a_validator_model(tmp_path, capsys):
    from node.model_state import ModelState
    from protocol.subnet import SubnetConfig
    from swarmtrain.cli import main

    state = ModelState.initial(SubnetConfig())
    state.save(tmp_path / "val" / "model.safetensors")
    assert main(["export", "--hf", str(tmp_path / "hf"), "--model", str(tmp_path / "val")]) == 0
    assert "AutoModelForCausalLM.from_pretrained" in capsys.readouterr().out
    assert main(["import", "--hf", str(tmp_path / "hf"), "--out", str(tmp_path / "back.safetensors")]) == 0
    weights, cfg, extra = load_model_file(tmp_path / "back.safetensors")
    assert model_hash(weights) == state.hash() and extra["source"] == "hf"
    assert (cfg.dim, cfg.vocab_size) == (64, 264)


def test_a_bpe_subnet_tokenizer_is_exported_as_is(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|pad|>"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the miner trains the model", "the validator scores the miner"] * 50, trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    cfg = CFG.model_copy(update={"vocab_size": 320})
    out = export_hf(build_model(cfg).state_dict(), cfg, tmp_path / "hf", tokenizer=str(path))
    loaded = transformers.AutoTokenizer.from_pretrained(out)
    text = "the validator trains"
    assert loaded.encode(text) == tok.encode(text).ids
    assert loaded.eos_token == "<|endoftext|>" and loaded.pad_token == "<|pad|>"
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == 0


def test_models_we_cannot_run_are_refused_with_the_reason(tmp_path):
    export_hf(_model().state_dict(), CFG, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "attention_bias": True}))
    with pytest.raises(HfInteropError, match="biases"):
        load_hf_causal_lm(tmp_path / "hf")
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "rope_parameters": {"rope_type": "yarn"}}))
    with pytest.raises(HfInteropError, match="RoPE scaling"):
        load_hf_causal_lm(tmp_path / "hf")
    with pytest.raises(HfInteropError, match="no config.json"):
        load_hf_causal_lm(tmp_path)
