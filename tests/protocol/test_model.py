"""protocol.model: presets, determinism, hashing, causality, training, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from protocol.model import (
    PRESETS,
    CheckpointError,
    ModelConfig,
    build_model,
    count_params,
    estimate_params,
    expected_spec,
    lm_loss,
    load_checkpoint,
    model_hash,
    param_spec,
    preset,
    save_checkpoint,
)

TINY = preset("tiny")


def test_preset_sizes_within_their_bands() -> None:
    bands = {"tiny": (0, 1_000_000), "small": (10e6, 30e6), "150m": (120e6, 180e6), "1b": (0.9e9, 1.2e9)}
    for name, (lo, hi) in bands.items():
        assert lo <= estimate_params(PRESETS[name]) < hi, name


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_estimate_matches_allocated_count(name: str) -> None:
    cfg = preset(name)
    model = build_model(cfg)
    assert count_params(model) == estimate_params(cfg)
    assert param_spec(model) == expected_spec(cfg)


def test_unknown_preset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="tiny.*small"):
        preset("huge")


@pytest.mark.parametrize(
    "bad",
    [dict(dim=66, n_heads=4), dict(n_heads=4, n_kv_heads=3), dict(dim=12, n_heads=4, n_kv_heads=4)],
)
def test_config_rejects_inconsistent_shapes(bad: dict) -> None:
    fields = TINY.model_dump() | bad
    with pytest.raises(ValueError):
        ModelConfig(**fields)


def test_config_is_frozen_and_strict() -> None:
    with pytest.raises(ValueError):
        ModelConfig(**TINY.model_dump(), unknown=1)
    with pytest.raises(ValueError):
        TINY.dim = 8  # type: ignore[misc]


def test_forward_shape_and_param_spec_order() -> None:
    model = build_model(TINY)
    logits = model(torch.randint(0, TINY.vocab_size, (3, 11)))
    assert logits.shape == (3, 11, TINY.vocab_size)
    spec = param_spec(model)
    assert list(spec) == [n for n, _ in model.named_parameters()]
    assert spec["tok_emb.weight"] == (TINY.vocab_size, TINY.dim)
    assert spec["layers.0.attn.wk.weight"] == (TINY.kv_dim, TINY.dim)


def test_init_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    a, b, c = build_model(TINY, seed=7), build_model(TINY, seed=7), build_model(TINY, seed=8)
    assert torch.equal(state, torch.get_rng_state())
    assert model_hash(a) == model_hash(b) != model_hash(c)
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_hash_sensitive_to_one_element_and_equal_for_state_dict() -> None:
    model = build_model(TINY, seed=1)
    h = model_hash(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert model_hash(state) == h
    state["layers.1.mlp.w2.weight"][3, 5] += 1e-6
    assert model_hash(state) != h


def test_hash_covers_names_and_shapes() -> None:
    t = torch.arange(6, dtype=torch.float32)
    base = model_hash({"a": t})
    assert model_hash({"b": t}) != base
    assert model_hash({"a": t.view(2, 3)}) != base


def test_causal_future_tokens_do_not_change_past_logits() -> None:
    model = build_model(TINY, seed=3).eval()
    x = torch.randint(0, TINY.vocab_size, (1, 20))
    y = x.clone()
    y[0, 12:] = (y[0, 12:] + 1) % TINY.vocab_size
    with torch.no_grad():
        lx, ly = model(x), model(y)
    assert torch.allclose(lx[0, :12], ly[0, :12], atol=1e-6)
    assert not torch.allclose(lx[0, 12:], ly[0, 12:], atol=1e-4)


def test_loss_decreases_with_adamw_on_repeated_batch() -> None:
    torch.manual_seed(0)
    model = build_model(TINY, seed=0)
    batch = torch.randint(0, TINY.vocab_size, (4, 33))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = lm_loss(model, batch).item()
    for _ in range(30):
        opt.zero_grad()
        loss = lm_loss(model, batch)
        loss.backward()
        opt.step()
    assert lm_loss(model, batch).item() < 0.7 * first


def test_lm_loss_rejects_bad_batch() -> None:
    with pytest.raises(ValueError, match="B, T\\+1"):
        lm_loss(build_model(TINY), torch.zeros(5, dtype=torch.long))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = build_model(TINY, seed=5)
    path = tmp_path / "ck.safetensors"
    digest = save_checkpoint(path, model, TINY, {"window": 12})
    state, cfg, extra = load_checkpoint(path)
    assert cfg == TINY and extra == {"window": 12}
    assert digest == model_hash(state) == model_hash(model)
    assert list(state) == list(param_spec(model))
    fresh = build_model(TINY, seed=0)
    fresh.load_state_dict(state)
    assert model_hash(fresh) == digest


def _rewrite(path: Path, edit) -> None:  # noqa: ANN001 (callable over the parsed file)
    """Rewrite a safetensors file after ``edit(header: dict, data: bytearray)``."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8 : 8 + n]), bytearray(raw[8 + n :])
    edit(header, data)
    hb = json.dumps(header).encode()
    path.write_bytes(len(hb).to_bytes(8, "little") + hb + bytes(data))


def test_checkpoint_detects_tampered_weights(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, build_model(TINY), TINY, {})

    def flip(header: dict, data: bytearray) -> None:
        start = header["norm.weight"]["data_offsets"][0]
        data[start + 1] ^= 0x40

    _rewrite(path, flip)
    with pytest.raises(CheckpointError, match="hash mismatch"):
        load_checkpoint(path)


def test_checkpoint_detects_config_mismatch_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, build_model(TINY), TINY, {})

    def swap_cfg(header: dict, data: bytearray) -> None:
        cfg = json.loads(header["__metadata__"]["swarmtrain.model_config"])
        header["__metadata__"]["swarmtrain.model_config"] = json.dumps(cfg | {"n_layers": 3})

    _rewrite(path, swap_cfg)
    with pytest.raises(CheckpointError, match="does not match config"):
        load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)
