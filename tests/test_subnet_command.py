"""`swarmtrain subnet init|show`: a documented config that loads, with the dataset hash computed."""

from __future__ import annotations

import json

from protocol.data import builtin_corpus
from protocol.subnet import SubnetConfig, config_diff, field_docs
from swarmtrain.cli import main
from tests.localnet_fixtures import CACHE


def test_every_field_is_documented():
    docs = field_docs()
    assert list(docs) == list(SubnetConfig.model_fields)
    assert all(len(text) > 10 for text in docs.values()), [k for k, v in docs.items() if len(v) <= 10]


def test_init_writes_every_field_with_its_meaning_and_the_dataset_hash(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SWARMTRAIN_CACHE", CACHE)
    out = tmp_path / "subnet.json"
    argv = ["subnet", "init", "--out", str(out), "--netuid", "3", "--set", "inner_steps=12", "--set", "seed=abc"]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert set(doc["_doc"]) == set(SubnetConfig.model_fields) and doc["_about"]
    cfg = SubnetConfig.load(out)  # the comments are ignored
    assert (cfg.netuid, cfg.inner_steps, cfg.seed) == (3, 12, "abc")
    assert cfg.dataset_hash == builtin_corpus(CACHE).content_hash
    assert f"config_hash={cfg.config_hash()}" in capsys.readouterr().out
    assert main(argv) == 1 and "--force" in capsys.readouterr().err  # no silent overwrite
    assert main(["subnet", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "inner_steps" in shown and "H: inner AdamW steps per window" in shown and cfg.config_hash() in shown


def test_init_refuses_unknown_fields_and_presets(tmp_path, capsys):
    out = str(tmp_path / "s.json")
    assert main(["subnet", "init", "--out", out, "--set", "inner_stepz=3"]) == 1
    assert "inner_steps" in capsys.readouterr().err  # lists the valid names
    assert main(["subnet", "init", "--out", out, "--preset", "huge"]) == 1
    assert "valid presets" in capsys.readouterr().err


def test_config_diff_names_each_field():
    a = SubnetConfig(inner_steps=20)
    b = a.model_copy(update={"inner_steps": 3, "outer_lr": 0.5})
    assert config_diff(a, b) == [("inner_steps", 20, 3), ("outer_lr", 1.5, 0.5)]
    assert config_diff(a, a) == []
