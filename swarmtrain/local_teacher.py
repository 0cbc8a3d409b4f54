"""A teacher for local outputs-mode runs and benchmarks: a model trained briefly on the subnet's
data, cached, so nothing is downloaded and a second run starts at once.

The default shape (``LOCAL_TEACHER``, ~0.8 M parameters: 128 wide, 4 layers) is chosen for a
CPU: about 8× the `tiny` student, so the student has something to learn from, and small enough
to train past the student's own reach in a few minutes on one core (``small``, 12.8 M, would
take most of an hour). The cache key holds everything that determines the weights (shape,
steps, batch, lr, seed, the dataset's content hash and the vocabulary), so a cached file is the
same teacher, and its model hash pins it in the subnet config like any other teacher.

Example:
    >>> path = local_teacher(builtin_corpus(), steps=1500)
    >>> cfg = SubnetConfig(task="outputs", teacher=str(path), teacher_hash=teacher_hash_of(path), ...)
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from pathlib import Path

import torch

from node.model_file import save_model_file
from protocol.data import TokenDataset, cache_root
from protocol.model import ModelConfig, Transformer, build_model, lm_loss, preset

log = logging.getLogger("swarmtrain.local")

TEACHER_SEQ_LEN = 64


def teacher_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / "teachers" / f"teacher-{key}.safetensors"


DEFAULT_STEPS = 1500  # ~1.5 M tokens: well past what the students of the demos see
LOCAL_TEACHER = ModelConfig(name="teacher-mini", dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden=352,
                            max_seq_len=256)


def local_teacher(dataset: TokenDataset, *, shape: ModelConfig | str = LOCAL_TEACHER, steps: int = DEFAULT_STEPS,
                  batch_size: int = 16, lr: float = 3e-3, seed: int = 7, vocab_size: int = 264,
                  cache_dir: Path | None = None, threads: int | None = None) -> Path:
    """The cached teacher file for these settings, trained first if absent (AdamW, warm-up,
    uniformly drawn training samples of ``TEACHER_SEQ_LEN`` tokens). ``shape``: a model config
    or a preset name."""
    cfg = teacher_config(shape, vocab_size)
    parts = f"{cfg.model_dump_json()}|{steps}|{batch_size}|{lr}|{seed}|{dataset.content_hash}|cosine"
    key = f"{cfg.name}-{steps}-{hashlib.sha256(parts.encode()).hexdigest()[:12]}"
    path = teacher_path(Path(cache_dir) if cache_dir else cache_root(), key)
    if path.is_file():
        return path
    started = time.monotonic()
    log.info("training the local teacher (%s, %d steps of %d samples): cached at %s for the next runs",
             cfg.name, steps, batch_size, path)
    model = train_teacher(dataset, cfg, steps, batch_size, lr, seed, vocab_size, threads)
    save_model_file(path, model, model.cfg, extra={"source": "swarmtrain.local_teacher", "steps": steps})
    log.info("teacher trained in %.0fs", time.monotonic() - started)
    return path


def outputs_fields(teacher: Path | None, steps: int, samples: int, vocab_size: int) -> dict[str, object]:
    """The outputs-mode fields of a local subnet config: the given teacher (or the cached local
    one, trained first when absent), pinned by its hash; the student keeps the config's preset."""
    from node.teacher import teacher_hash_of
    from protocol.data import builtin_corpus

    path = Path(teacher) if teacher is not None else local_teacher(builtin_corpus(), steps=steps, vocab_size=vocab_size)
    return {"task": "outputs", "teacher": str(path.resolve()), "teacher_hash": teacher_hash_of(path),
            "outputs_samples": samples, "outer_lr": 1.0}


def lr_at(step: int, steps: int, peak: float, warmup: int = 20) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``peak`` down to ``peak / 10``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def teacher_config(shape: ModelConfig | str, vocab_size: int) -> ModelConfig:
    """``shape`` (a config, or a preset's name) with the subnet's vocabulary."""
    cfg = preset(shape) if isinstance(shape, str) else shape
    return ModelConfig.model_validate({**cfg.model_dump(), "vocab_size": vocab_size})


def train_teacher(dataset: TokenDataset, shape: ModelConfig | str, steps: int, batch_size: int, lr: float, seed: int,
                  vocab_size: int, threads: int | None = None) -> Transformer:
    """``steps`` AdamW steps of ``shape`` (a config or a preset's name) from a seeded init on random training samples
    (``lr_at``: warm-up, then cosine decay to a tenth)."""
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        model = build_model(teacher_config(shape, vocab_size), seed=seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95))
        gen = torch.Generator().manual_seed(seed)
        population = dataset.num_samples(TEACHER_SEQ_LEN)
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr)
            batch = dataset.batch(torch.randint(0, population, (batch_size,), generator=gen).tolist(), TEACHER_SEQ_LEN)
            opt.zero_grad(set_to_none=True)
            lm_loss(model, batch).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if (step + 1) % 50 == 0:
                log.info("teacher step %d/%d", step + 1, steps)
        return model.eval()
    finally:
        torch.set_num_threads(saved)
