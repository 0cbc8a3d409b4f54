"""The multi-process miner (torch.distributed, 2 ranks over gloo on CPU) computes the update
of the single-process miner: same samples, Δ within fp tolerance; DDP and FSDP2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from miner.distributed import dist_env, to_indexed, to_named, torchrun_argv
from miner.trainer import InnerTrainer
from protocol.model import build_model, preset
from protocol.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
LR = 3e-3
MICRO_BATCH = {"ddp": 3, "fsdp": None}  # DDP with gradient accumulation, FSDP2 without


def window_batches(window: int) -> list[torch.Tensor]:
    """Three inner steps of 8 samples (odd splits too: 8 rows over 2 ranks, micro-batches of 3)."""
    gen = torch.Generator().manual_seed(100 + window)
    return [torch.randint(0, 264, (8, 33), generator=gen) for _ in range(3)]


def single_process(micro_batch: int | None) -> tuple[list, list]:
    base = {n: p.detach().clone() for n, p in build_model(preset("tiny")).named_parameters()}
    trainer = InnerTrainer(preset("tiny"), lr=LR, micro_batch=micro_batch)
    runs = [trainer.train(base, window_batches(w)) for w in (0, 1)]
    return [r.delta for r in runs], [r.losses for r in runs]



@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> dict:
    """One torchrun job of 2 gloo ranks on 127.0.0.1 (DDP, then FSDP2); torchrun waits for both."""
    out = tmp_path_factory.mktemp("ddp") / "result.pt"
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2",
            "--master-addr=127.0.0.1", f"--master-port={free_port()}",
            str(ROOT / "tests" / "miner" / "ddp_worker.py"), str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_compute_the_single_process_update(two_ranks, mode):
    got = two_ranks[mode]
    deltas, losses = single_process(MICRO_BATCH[mode])
    assert got["rows"] == 2 * 3 * 4  # rank 0 trained its half of each 8-sample batch
    for window in (0, 1):
        assert got["losses"][window] == pytest.approx(losses[window], rel=1e-5)
        for name, d in deltas[window].items():
            # relative to the tensor: Adam turns summation-order noise into sign noise where grads ~ 0
            assert float((got["delta"][window][name] - d).norm() / d.norm()) < 1e-3, (window, name)


def test_state_formats_and_launcher_argv():
    names = ["a", "b"]
    indexed = {"state": {0: {"step": 1}, 1: {"step": 2}}, "param_groups": [{"lr": 1.0, "params": [0, 1]}]}
    assert to_indexed(to_named(indexed, names), names) == indexed
    assert dist_env({}) is None
    assert dist_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}).rank == 1
    argv = torchrun_argv(["miner", "--netuid", "1", "--gpus", "4", "--device", "cuda"], 4, "py")
    assert argv == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4",
                    "-m", "swarmtrain", "miner", "--netuid", "1", "--device", "cuda"]
