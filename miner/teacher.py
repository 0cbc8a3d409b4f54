"""An outputs-mode miner: label the window's assigned samples with the pinned teacher.

    sync to θ_w (the student: kept to check hashes) → fetch the window's shards → run the
    teacher over the assigned samples, in order, in batches sized to the device's memory,
    until they are done or the window is nearly over → top-k log-probabilities + remaining
    mass of every position (``protocol.distill.teacher_topk``) → encode
    (``protocol.outputs_codec``) → sign and submit the delivered samples → apply the
    student update like any aggregate

A miner is paid for the positions it delivers and that pass the validators' recomputation,
so it labels as many samples as its device allows and stops ``deadline_blocks`` before the
window ends to upload in time. Faulty or cheating miners (``miner.cheats``) override
``samples_to_label`` or ``finish_outputs``.

Example:
    >>> labeler = Labeler(load_teacher(cfg, "cuda"), cfg)
    >>> miner = OutputsMiner(labeler=labeler, chain=..., wallet=..., cfg=cfg, dataset=..., store=...,
    ...                      client=..., metrics=...)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from chain.errors import ChainError
from miner.service import Miner, WindowReport
from miner.state import MinerState
from node.logs import progress_line
from node.teacher import Teacher
from protocol import outputs_codec
from protocol.distill import outputs_spec, teacher_topk
from protocol.outputs_codec import TeacherOutputs
from protocol.retry import poll_until
from protocol.subnet import SubnetConfig
from protocol.windows import window_end_block

log = logging.getLogger("swarmtrain.miner.teacher")

# (samples labelled so far, samples to label, tokens per second) -> None
BatchCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class LabelResult:
    """The outputs of the first ``outputs.n_samples`` samples, and how long they took."""

    outputs: TeacherOutputs
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.outputs.positions / max(self.seconds, 1e-9)


class Labeler:
    """Runs a teacher over samples in memory-sized batches and keeps the top-k of each position."""

    def __init__(self, teacher: Teacher, cfg: SubnetConfig, *, batch_size: int | None = None) -> None:
        self.teacher = teacher
        self.topk, self.bits = cfg.outputs_topk, cfg.outputs_value_bits
        self.batch_size = batch_size or teacher.batch_size(cfg.seq_len)

    def label(self, samples: Tensor, should_stop: Callable[[], bool] = lambda: False,
              on_batch: BatchCallback | None = None) -> LabelResult:
        """Outputs of ``samples`` (N, T+1) in order; stops between batches once ``should_stop()``
        (always after at least one batch)."""
        started, parts, done = time.monotonic(), list[TeacherOutputs](), 0
        total = int(samples.shape[0])
        while done < total and not (parts and should_stop()):
            batch = samples[done : done + self.batch_size]
            parts.append(teacher_topk(self.teacher.logprobs(batch[:, :-1]), self.topk, self.bits))
            done += int(batch.shape[0])
            if on_batch is not None:
                on_batch(done, total, done * (samples.shape[1] - 1) / max(time.monotonic() - started, 1e-9))
        outputs = TeacherOutputs(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("ids", "q", "rest_q")))
        return LabelResult(outputs, time.monotonic() - started)


class OutputsMiner(Miner):
    """A miner of an outputs-mode subnet (``SubnetConfig.task == "outputs"``)."""

    def __init__(self, *, labeler: Labeler, deadline_blocks: int | None = None, **kwargs: Any) -> None:
        super().__init__(trainer=None, **kwargs)  # type: ignore[arg-type]  # no inner training here
        self.labeler = labeler
        self.spec = outputs_spec(self.cfg)
        self.deadline_blocks = deadline_blocks if deadline_blocks is not None else max(1, self.cfg.blocks_per_window // 5)

    async def make_payload(self, window: int, indices: list[int], report: WindowReport) -> tuple[bytes, list[int]]:
        """Label as many assigned samples as the window allows; the payload covers the first n."""
        samples = self.samples_to_label(window, indices)
        result = await self.label_until_deadline(window, samples)
        outputs = self.finish_outputs(window, result.outputs)
        payload = self.timed(report, "encode", lambda: outputs_codec.encode(outputs, self.spec))
        n = outputs.n_samples
        report.trained = True
        report.timings["label"] = result.seconds
        report.details = {"samples": n, "samples_assigned": len(indices), "positions": outputs.positions,
                          "tokens_per_s": round(result.tokens_per_s, 1), "bytes_per_position": round(len(payload) / outputs.positions, 2)}
        log.info(progress_line("outputs", w=window, samples=f"{n}/{len(indices)}", tok_s=result.tokens_per_s,
                               bytes=len(payload), s=result.seconds))
        return payload, indices[:n]

    def samples_to_label(self, window: int, indices: list[int]) -> Tensor:
        """The assigned samples (N, T+1), in assignment order."""
        return self.dataset.batch(indices, self.cfg.seq_len)

    def finish_outputs(self, window: int, outputs: TeacherOutputs) -> TeacherOutputs:
        """What is sent: the teacher's outputs as computed (cheats override this)."""
        return outputs

    async def label_until_deadline(self, window: int, samples: Tensor) -> LabelResult:
        """Label in a worker thread; stop between batches ``deadline_blocks`` before the window ends."""
        stop = threading.Event()
        last_log = [0.0]

        def on_batch(done: int, total: int, tok_s: float) -> None:
            if time.monotonic() - last_log[0] > 2.0 or done == total:
                last_log[0] = time.monotonic()
                log.info(progress_line("label", w=window, samples=f"{done}/{total}", tok_s=tok_s))

        task = asyncio.ensure_future(asyncio.to_thread(self.labeler.label, samples, stop.is_set, on_batch))
        last_block = window_end_block(window, self.cfg.blocks_per_window) - self.deadline_blocks
        try:
            await poll_until(self._block_or_none, lambda b: task.done() or (b is not None and b >= last_block),
                             timeout=self.options.sync_timeout_s, interval=self.options.poll_interval_s,
                             on_timeout=None)
        finally:
            stop.set()  # the deadline block, the time limit, or cancellation: stop after this batch
        return await task

    async def _block_or_none(self) -> int | None:
        """The chain's block, or None on a chain hiccup (it must not lose the labels)."""
        try:
            return await self.chain.block()
        except ChainError as exc:
            log.debug(progress_line("block read failed while labelling", reason=exc))
            return None

    def checkpoint(self) -> None:
        self.store.save(MinerState(model=self.model))


def build_labeler(cfg: SubnetConfig, device: str, teacher_path: Any = None) -> Labeler:
    """The subnet's teacher on ``device`` (checked against the config) wrapped in a ``Labeler``."""
    from node.devices import resolve_device
    from node.teacher import load_teacher

    dev = resolve_device(device)
    teacher = load_teacher(cfg, dev, teacher_path)
    log.info("teacher %s… (%s, %d layers, dim %d) on %s in %s, %d samples per batch", teacher.hash[:12],
             teacher.config.name, teacher.config.n_layers, teacher.config.dim, dev, teacher.dtype,
             teacher.batch_size(cfg.seq_len))
    return Labeler(teacher, cfg)
