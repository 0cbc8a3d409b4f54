"""protocol.subnet: per-preset H, the outer-step fields, strictness and the config hash."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from node.model_state import ModelState
from protocol.subnet import DEFAULT_INNER_LR, DEFAULT_INNER_STEPS, PRESET_DEFAULTS, SubnetConfig


def test_absent_fields_take_the_presets_values() -> None:
    assert SubnetConfig().inner_steps == PRESET_DEFAULTS["tiny"]["inner_steps"]
    assert SubnetConfig().inner_lr == DEFAULT_INNER_LR
    small = SubnetConfig(preset="small")
    assert (small.inner_steps, small.inner_lr) == (PRESET_DEFAULTS["small"]["inner_steps"],
                                                   PRESET_DEFAULTS["small"]["inner_lr"])
    big = SubnetConfig(preset="1b")
    assert (big.inner_steps, big.inner_lr) == (DEFAULT_INNER_STEPS, DEFAULT_INNER_LR)
    assert SubnetConfig(preset="small", inner_steps=17, inner_lr=0.01).inner_steps == 17
    assert SubnetConfig(preset="small", inner_lr=0.01).inner_lr == 0.01


def test_saved_config_keeps_its_inner_steps(tmp_path) -> None:
    cfg = SubnetConfig(preset="small")
    cfg.save(tmp_path / "subnet.json")
    loaded = SubnetConfig.load(tmp_path / "subnet.json")
    assert loaded == cfg and loaded.config_hash() == cfg.config_hash()
    moved = SubnetConfig.model_validate({**cfg.model_dump(), "preset": "1b"})
    assert moved.inner_steps == cfg.inner_steps  # an explicit value is never replaced


def test_outer_nesterov_needs_momentum_and_reaches_the_optimizer() -> None:
    with pytest.raises(ValidationError, match="outer_momentum"):
        SubnetConfig(outer_nesterov=True)
    cfg = SubnetConfig(outer_momentum=0.9, outer_nesterov=True, outer_lr=0.7)
    outer = ModelState.initial(cfg).outer
    assert (outer.lr, outer.momentum, outer.nesterov) == (0.7, 0.9, True)


def test_config_stays_strict() -> None:
    with pytest.raises(ValidationError):
        SubnetConfig(inner_step=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        SubnetConfig(inner_steps=0)
