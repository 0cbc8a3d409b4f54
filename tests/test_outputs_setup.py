"""Outputs mode, setting up: the teacher pinned by its weights whichever file holds them, the
subnet config that pins it, the miner's labeller, and the local command's flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from miner.teacher import Labeler
from node.hf_interop import export_hf
from node.model_state import ModelState
from node.teacher import TeacherError, load_teacher, read_teacher, teacher_hash_of
from protocol.model import model_hash
from protocol.subnet import SubnetConfig
from swarmtrain.cli import main
from tests.localnet_fixtures import CACHE
from tests.outputs_fixtures import assigned, label, outputs_cfg, outputs_setup, tiny_teacher  # noqa: F401 (fixtures)


def test_teacher_hash_is_the_same_in_every_format(tiny_teacher, tmp_path):  # noqa: F811
    path, digest = tiny_teacher
    model, cfg = read_teacher(path)
    assert teacher_hash_of(path) == digest == model_hash(model)
    export_hf(model.state_dict(), cfg, tmp_path / "hf", tokenizer="bytes")
    assert teacher_hash_of(tmp_path / "hf") == digest  # a Hugging Face directory of the same weights
    state = ModelState.initial(SubnetConfig())
    state.model.load_state_dict(model.state_dict())
    state.save(tmp_path / "model.safetensors")
    assert teacher_hash_of(tmp_path / "model.safetensors") == digest  # a node's model state file


def test_a_node_refuses_another_teacher_and_says_what_to_do(tiny_teacher, tmp_path):  # noqa: F811
    path, digest = tiny_teacher
    cfg = outputs_cfg(path, "ab" * 32, "")
    with pytest.raises(TeacherError, match="--teacher"):
        load_teacher(cfg)
    with pytest.raises(TeacherError, match="not found"):
        load_teacher(outputs_cfg(tmp_path / "missing.safetensors", digest, ""))
    with pytest.raises(TeacherError, match="vocabulary"):
        load_teacher(outputs_cfg(path, digest, "", vocab_size=320))
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(TeacherError, match="safetensors"):
        load_teacher(outputs_cfg(tmp_path / "junk.safetensors", digest, ""))
    teacher = load_teacher(outputs_cfg(tmp_path / "elsewhere", digest, ""), path=path)  # --teacher
    assert teacher.dtype == torch.float32 and teacher.hash == digest


def test_labeler_labels_in_order_and_stops_between_batches(outputs_setup):  # noqa: F811
    cfg, ds, teacher = outputs_setup
    idx = assigned(cfg, ds, 0, 1)
    samples = ds.batch(idx, cfg.seq_len)
    seen: list[int] = []
    result = Labeler(teacher, cfg, batch_size=5).label(samples, on_batch=lambda done, total, tok_s: seen.append(done))
    assert seen == [5, 10, 15, 16] and result.outputs.n_samples == 16 and result.tokens_per_s > 0
    whole = label(teacher, cfg, ds, idx)
    assert np.array_equal(result.outputs.ids, whole.ids) and np.array_equal(result.outputs.q, whole.q)
    stopped = Labeler(teacher, cfg, batch_size=5).label(samples, should_stop=lambda: True)
    assert stopped.outputs.n_samples == 5  # one batch, then the deadline


def test_subnet_init_pins_the_teacher(tiny_teacher, tmp_path, capsys, monkeypatch):  # noqa: F811
    path, digest = tiny_teacher
    monkeypatch.setenv("SWARMTRAIN_CACHE", CACHE)
    out = tmp_path / "subnet.json"
    assert main(["subnet", "init", "--out", str(out), "--set", "task=outputs", "--set", f"teacher={path}"]) == 0
    cfg = SubnetConfig.load(out)
    assert (cfg.task, cfg.teacher_hash, cfg.outer_lr) == ("outputs", digest, 1.0)
    assert f"teacher_hash={digest}" in capsys.readouterr().out
    assert "outputs_spot_checks" in json.loads(out.read_text())["_doc"]
    assert main(["subnet", "init", "--out", str(tmp_path / "b.json"), "--set", "task=outputs"]) == 1
    assert "teacher" in capsys.readouterr().err


def test_local_cheat_flags_are_checked_before_anything_starts(tmp_path, capsys):
    assert main(["local", "--out", str(tmp_path), "--cheat", "random"]) == 1
    assert "--task outputs" in capsys.readouterr().err
    assert main(["local", "--out", str(tmp_path), "--task", "outputs", "--cheat", "bribe"]) == 1
    assert "random" in capsys.readouterr().err
