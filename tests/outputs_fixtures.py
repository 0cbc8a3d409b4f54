"""Shared pieces of the outputs-mode tests: a tiny teacher trained briefly on the built-in
corpus (once per session), an outputs-mode subnet config around it, and labelling helpers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from node.model_file import save_model_file
from node.teacher import Teacher, load_teacher
from protocol.data import TokenDataset, builtin_corpus
from protocol.distill import teacher_topk
from protocol.outputs_codec import TeacherOutputs
from protocol.subnet import SubnetConfig
from protocol.windows import assigned_samples
from swarmtrain.local_teacher import train_teacher

CACHE = os.environ.get("SWARMTRAIN_CACHE") or str(Path.home() / ".cache" / "swarmtrain")


def corpus() -> TokenDataset:
    return builtin_corpus(CACHE)


def outputs_cfg(teacher: Path, teacher_hash: str, dataset_hash: str, **overrides: Any) -> SubnetConfig:
    """Outputs mode with a tiny student, 16 samples of 32 tokens per uid and window."""
    fields: dict[str, Any] = dict(
        netuid=7, task="outputs", preset="tiny", teacher=str(teacher), teacher_hash=teacher_hash,
        dataset_hash=dataset_hash, seq_len=32, batch_size=8, outputs_samples=16, outputs_topk=8,
        outputs_spot_checks=24, blocks_per_window=10, inner_lr=3e-3, max_evaluations=16, checkpoint_every=2,
    )
    return SubnetConfig(**{**fields, **overrides})


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tiny-preset teacher, 80 AdamW steps on the built-in corpus: (file, model hash)."""
    model = train_teacher(corpus(), "tiny", steps=80, batch_size=16, lr=1e-2, seed=11, vocab_size=264, threads=1)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    digest = save_model_file(path, model, model.cfg)
    return path, digest


@pytest.fixture(scope="session")
def outputs_setup(tiny_teacher: tuple[Path, str]) -> tuple[SubnetConfig, TokenDataset, Teacher]:
    path, digest = tiny_teacher
    ds = corpus()
    cfg = outputs_cfg(path, digest, ds.content_hash)
    return cfg, ds, load_teacher(cfg)


def assigned(cfg: SubnetConfig, ds: TokenDataset, window: int, uid: int) -> list[int]:
    return assigned_samples(cfg.seed_bytes, window, uid, cfg.samples_per_window, ds.num_samples(cfg.seq_len))


def label(teacher: Teacher, cfg: SubnetConfig, ds: TokenDataset, indices: list[int]) -> TeacherOutputs:
    """What an honest miner sends for ``indices``."""
    batch = ds.batch(indices, cfg.seq_len)
    with torch.no_grad():
        return teacher_topk(teacher.logprobs(batch[:, :-1]), cfg.outputs_topk, cfg.outputs_value_bits)
