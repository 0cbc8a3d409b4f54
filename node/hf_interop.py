"""Hugging Face interop: our decoder as a transformers LLaMA directory, and back.

``export_hf`` writes what ``transformers.AutoModelForCausalLM.from_pretrained(dir)`` and
``AutoTokenizer.from_pretrained(dir)`` load: ``config.json`` (``LlamaForCausalLM``),
``model.safetensors`` (fp32), ``generation_config.json`` and a fast tokenizer
(``tokenizer.json``: the byte tokenizer written out as a byte-level BPE without merges,
or the subnet's own tokenizer file). ``load_hf_causal_lm`` reads such a directory (ours,
or any LLaMA-architecture model saved by transformers) into our ``Transformer``, so a
subnet can start from, or distil from, a Hugging Face model. Neither needs transformers.

Why no weight permutation: our rotary embedding is the rotate-half layout (pairs i and
i + head_dim/2), which is what transformers' LLaMA uses; our GQA repeats each kv head for
consecutive query heads (``repeat_interleave``), as transformers' ``repeat_kv`` does; both
RMSNorms normalise in fp32 with eps inside the square root. Our embeddings are untied, so
an exported model sets ``tie_word_embeddings: false``; an imported tied model gets a copy
of its embedding as ``lm_head``.

Example:
    >>> export_hf(model.state_dict(), cfg, Path("out/hf"), tokenizer="bytes")
    >>> model, cfg = load_hf_causal_lm(Path("out/hf"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from protocol.data import BOS, EOS, PAD
from protocol.files import atomic_write
from protocol.model import ModelConfig, Transformer, expected_spec
from protocol.tokenizer import BYTES, load_tokenizer_file

BOS_TEXT, EOS_TEXT, PAD_TEXT = "<s>", "</s>", "<pad>"  # the byte tokenizer's specials, by name

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")
_PER_LAYER = {  # ours -> transformers' LLaMA, inside one block
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wq.weight": "self_attn.q_proj.weight",
    "attn.wk.weight": "self_attn.k_proj.weight",
    "attn.wv.weight": "self_attn.v_proj.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.w1.weight": "mlp.gate_proj.weight",
    "mlp.w3.weight": "mlp.up_proj.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
}
_TOP = {"tok_emb.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
        "lm_head.weight": "lm_head.weight"}


class HfInteropError(ValueError):
    """A directory is not a LLaMA-architecture model we can load, or cannot be written."""


# ---- names ----------------------------------------------------------------------------------
def hf_name(ours: str) -> str:
    """Our parameter name -> transformers' LLaMA name."""
    if ours in _TOP:
        return _TOP[ours]
    m = _LAYER.match(ours)
    if m is None or m.group(2) not in _PER_LAYER:
        raise HfInteropError(f"no transformers name for parameter {ours!r}")
    return f"model.layers.{m.group(1)}.{_PER_LAYER[m.group(2)]}"


def our_name(theirs: str) -> str | None:
    """transformers' LLaMA name -> ours (None for buffers we do not keep, e.g. rotary tables)."""
    for ours, hf in _TOP.items():
        if theirs == hf:
            return ours
    m = re.match(r"^model\.layers\.(\d+)\.(.+)$", theirs)
    if m:
        for ours, hf in _PER_LAYER.items():
            if m.group(2) == hf:
                return f"layers.{m.group(1)}.{ours}"
    return None


# ---- export ---------------------------------------------------------------------------------
def hf_config(cfg: ModelConfig, *, bos_id: int | None, eos_id: int | None, pad_id: int | None) -> dict[str, Any]:
    """``config.json`` of the LLaMA model equal to ours (transformers 4.40+ and 5.x read it)."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.dim, "intermediate_size": cfg.ffn_hidden,
        "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta, "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "attention_dropout": 0.0, "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
        "bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id,
        "torch_dtype": "float32", "dtype": "float32",
    }


def bytes_to_unicode() -> dict[int, str]:
    """The byte-level BPE alphabet: printable bytes stand for themselves, the rest are shifted
    past 255, so every byte is one visible character (GPT-2's convention, which the
    ``tokenizers`` ByteLevel pre-tokenizer and decoder use)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, shift = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + shift)
            shift += 1
    return out


def _added(token_id: int, text: str) -> dict[str, Any]:
    return {"id": token_id, "content": text, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def byte_tokenizer_json() -> dict[str, Any]:
    """Our byte tokenizer (id = byte, BOS 256, EOS 257, PAD 258) as a ``tokenizers`` file."""
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [_added(BOS, BOS_TEXT), _added(EOS, EOS_TEXT), _added(PAD, PAD_TEXT)],
        "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None, "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": []},
    }


def _special_text(doc: dict[str, Any], token_id: int) -> str | None:
    for tok in doc.get("added_tokens") or []:
        if isinstance(tok, dict) and tok.get("id") == token_id:
            return str(tok.get("content"))
    vocab = (doc.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        return next((str(k) for k, v in vocab.items() if v == token_id), None)
    return None


def write_tokenizer(out: Path, tokenizer: str, max_len: int) -> dict[str, int | None]:
    """``tokenizer.json`` + ``tokenizer_config.json``; returns the special ids for config.json.

    ``tokenizer`` is ``bytes`` or the path of the subnet's ``tokenizers`` JSON file.
    """
    ids: dict[str, int | None]
    specials: dict[str, str | None]
    if tokenizer == BYTES:
        doc, ids = byte_tokenizer_json(), {"bos": BOS, "eos": EOS, "pad": PAD}
        specials = {"bos_token": BOS_TEXT, "eos_token": EOS_TEXT, "pad_token": PAD_TEXT}
        atomic_write(out / "tokenizer.json", json.dumps(doc, ensure_ascii=False).encode("utf-8"))
    else:
        info, data = load_tokenizer_file(tokenizer)
        doc = json.loads(data)
        atomic_write(out / "tokenizer.json", data)  # the subnet's file, byte for byte
        pad = next((t["id"] for t in doc.get("added_tokens") or [] if t.get("content") in ("<|pad|>", "<pad>")), None)
        ids = {"bos": None, "eos": info.eos_id, "pad": pad}
        specials = {"eos_token": _special_text(doc, info.eos_id)}
        if pad is not None:
            specials["pad_token"] = _special_text(doc, pad)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len, "add_bos_token": False,
              "add_eos_token": False, "clean_up_tokenization_spaces": False, **specials}
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", specials)
    return ids


def export_hf(state: Mapping[str, Tensor], cfg: ModelConfig, out: Path, *, tokenizer: str = BYTES,
              extra: dict[str, Any] | None = None) -> Path:
    """Write ``state`` (our parameter names) as a transformers LLaMA directory ``out``."""
    from safetensors.torch import save

    want = expected_spec(cfg)
    got = {k: tuple(v.shape) for k, v in state.items() if k in want}
    if got != want:
        raise HfInteropError(f"the weights do not match model config {cfg.name!r}: e.g. "
                             f"{sorted(set(got.items()) ^ set(want.items()))[:3]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {hf_name(k): state[k].detach().to("cpu", torch.float32).contiguous() for k in want}
    atomic_write(out / "model.safetensors", save(tensors, metadata={"format": "pt", **(extra or {})}))
    ids = write_tokenizer(out, tokenizer, cfg.max_seq_len)
    config = hf_config(cfg, bos_id=ids["bos"], eos_id=ids["eos"], pad_id=ids["pad"])
    _write_json(out / "config.json", config)
    generation = {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"], "pad_token_id": ids["pad"]}
    _write_json(out / "generation_config.json", generation)
    return out


def _write_json(path: Path, obj: Any) -> None:
    """Indented JSON in the key order given (transformers' files read best that way), crash-safely."""
    atomic_write(path, json.dumps(obj, indent=2).encode("utf-8"))


# ---- import ---------------------------------------------------------------------------------
def _require(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise HfInteropError(f"{path}: {what}; only LLaMA-architecture models (rotate-half RoPE, SwiGLU, "
                             "RMSNorm, no biases) can be loaded")


def model_config_of(hf: dict[str, Any], path: Path) -> ModelConfig:
    """Our ``ModelConfig`` for a transformers LLaMA ``config.json`` (refusing what we cannot run)."""
    _require(hf.get("model_type") in ("llama", "mistral") and not hf.get("sliding_window"), path,
             f"model_type {hf.get('model_type')!r} (sliding window {hf.get('sliding_window')})")
    _require(hf.get("hidden_act", "silu") == "silu", path, f"activation {hf.get('hidden_act')!r}")
    _require(not hf.get("attention_bias") and not hf.get("mlp_bias"), path, "biases in attention or MLP")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    _require(rope.get("rope_type", rope.get("type", "default")) == "default", path, f"RoPE scaling {rope}")
    missing = [k for k in ("hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size",
                           "vocab_size") if k not in hf]
    _require(not missing, path, f"config.json lacks {missing}")
    dim, heads = int(hf["hidden_size"]), int(hf["num_attention_heads"])
    _require(int(hf.get("head_dim") or dim // heads) * heads == dim, path, "head_dim * heads != hidden_size")
    theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    return ModelConfig(
        name=f"hf-{path.name}"[:64] or "hf", vocab_size=int(hf["vocab_size"]), dim=dim,
        n_layers=int(hf["num_hidden_layers"]), n_heads=heads,
        n_kv_heads=int(hf.get("num_key_value_heads") or heads), ffn_hidden=int(hf["intermediate_size"]),
        max_seq_len=int(hf.get("max_position_embeddings") or 2048), rope_theta=float(theta),
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
    )


def _read_weights(path: Path) -> dict[str, Tensor]:
    """Every tensor of ``model.safetensors``, its sharded index, or ``pytorch_model.bin``."""
    from safetensors.torch import load_file

    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for f in files for k, v in load_file(str(path / f)).items()}
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise HfInteropError(f"{path} holds no model.safetensors (nor an index of shards, nor pytorch_model.bin)")


def load_hf_causal_lm(path: str | Path) -> tuple[Transformer, ModelConfig]:
    """Our ``Transformer`` (fp32, CPU) and its ``ModelConfig`` from a transformers LLaMA directory."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HfInteropError(f"{path} has no config.json: not a transformers model directory")
    hf = json.loads(config_file.read_text(encoding="utf-8"))
    cfg = model_config_of(hf, path)
    theirs = _read_weights(path)
    state = {ours: t for name, t in theirs.items() if (ours := our_name(name)) is not None}
    if "lm_head.weight" not in state and hf.get("tie_word_embeddings") and "tok_emb.weight" in state:
        state["lm_head.weight"] = state["tok_emb.weight"].clone()  # ours are untied: a copy
    want = expected_spec(cfg)
    missing = [k for k in want if k not in state]
    wrong = [k for k in want if k in state and tuple(state[k].shape) != want[k]]
    if missing or wrong:
        raise HfInteropError(f"{path}: weights missing {missing[:3]} / of the wrong shape {wrong[:3]}")
    with torch.device("meta"):
        model = Transformer(cfg)
    model.to_empty(device="cpu")
    model.load_state_dict({k: state[k].to(torch.float32) for k in want}, strict=True)
    return model.eval(), cfg
