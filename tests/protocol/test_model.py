"""protocol.model: presets, determinism, hashing, causality, training."""

from __future__ import annotations

import pytest
import torch

from protocol.model import (
    PRESETS,
    ModelConfig,
    build_model,
    count_params,
    estimate_params,
    expected_spec,
    lm_loss,
    model_hash,
    param_spec,
    preset,
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
