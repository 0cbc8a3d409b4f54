"""One rank of the 2-rank gloo test (started by torchrun from tests/miner/test_distributed.py).

For DDP (micro-batches of 3: gradient accumulation) and then FSDP2, every rank builds a
``DistributedTrainer``; rank 0 drives two windows of inner steps the way the miner does
(``train`` with θ_w and the window's batches, the optimizer state saved and loaded back
between them) and writes Δ and the losses to OUT; rank 1 serves.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from miner.distributed import DistEnv, DistributedTrainer, dist_env, init_distributed
from protocol.model import build_model, preset
from tests.miner.test_distributed import LR, MICRO_BATCH, window_batches


def run_mode(env: DistEnv, device: torch.device, mode: str) -> dict | None:
    trainer = DistributedTrainer(preset("tiny"), lr=LR, device=device, env=env, shard=mode == "fsdp",
                                 micro_batch=MICRO_BATCH[mode])
    if not trainer.is_main:
        trainer.serve()
        return None
    base = {n: p.detach().clone() for n, p in build_model(preset("tiny")).named_parameters()}
    try:
        first = trainer.train(base, window_batches(0))
        trainer.load_optimizer_state(trainer.optimizer_state())  # a restart's round trip
        second = trainer.train(base, window_batches(1))
    finally:
        trainer.shutdown()
    return {"delta": [first.delta, second.delta], "losses": [first.losses, second.losses],
            "rows": trainer.rows_trained}


def main(out: Path) -> None:
    torch.set_num_threads(1)
    env = dist_env()
    assert env is not None and env.world_size == 2
    device = init_distributed(env, "cpu", timeout_s=120)
    results = {mode: run_mode(env, device, mode) for mode in MICRO_BATCH}
    if env.rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
