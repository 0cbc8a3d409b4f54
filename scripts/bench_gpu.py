#!/usr/bin/env python3
"""The miner's inner loop and the validator's evaluation on a CUDA GPU.

Only where torch sees a CUDA GPU; elsewhere it says so and exits with status 2.

* **miner**: for each preset (default ``150m`` and ``1b``), the miner's own trainer
  (``miner.trainer.InnerTrainer``) with the memory settings ``swarmtrain miner`` would pick
  on this GPU (``miner.memory_plan.choose``: bf16 autocast, fused AdamW, checkpointing and
  micro-batch as planned) runs inner steps of ``--batch-size`` x the preset's context:
  tokens/s, MFU and peak memory (``torch.cuda.max_memory_allocated``) against the plan's
  prediction; planned for a 24 GiB home GPU by default (``--plan-memory-gib``), so on a
  larger GPU the peak checks that plan. MFU counts model FLOPs only (no recomputation): 6 x the parameters in
  matmuls + 12 x layers x dim x seq_len per token (forward and backward), over the GPU's
  dense bf16 peak (``--peak-tflops``, else a table of common GPUs).
* **validator**: ``bench_validator.py --miners N`` on this GPU — one miner at a time
  against batched evaluation (K miners per pass) — for ``--validator-presets``.

Usage:
    python scripts/bench_gpu.py                      # 150m and 1b, validator on small
    python scripts/bench_gpu.py --quick              # fewer steps and miners

Last line: ``tokens_per_s_150m=... mfu_150m=... peak_gib_150m=... ... miners_per_window_batched_small=...``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import _bench_common as bc

bc.ensure_repo_on_path()

import torch  # noqa: E402

from miner.memory_plan import GIB, MemorySettings, choose, linear_params  # noqa: E402
from miner.trainer import InnerTrainer  # noqa: E402
from protocol.model import ModelConfig, preset  # noqa: E402

NO_GPU_STATUS = 2
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity), by a substring of the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 756.0, "GH200": 989.0,
    "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0,
    "RTX 4090": 165.0, "RTX 3090": 71.0, "RTX A6000": 155.0,
}


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward): 6 x matmul parameters + attention."""
    return 6.0 * linear_params(cfg) + 12.0 * cfg.n_layers * cfg.dim * seq_len


def mfu(tokens_per_s: float, per_token_flops: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the device's peak."""
    return tokens_per_s * per_token_flops / (peak_tflops * 1e12) if peak_tflops > 0 else float("nan")


def peak_tflops(device_name: str, override: float | None = None) -> float:
    """The dense bf16 peak of a device (``override`` wins); NaN when unknown."""
    if override:
        return override
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):  # "H100 SXM" before "H100"
        if key in device_name:
            return PEAK_BF16_TFLOPS[key]
    return float("nan")


def miner_loop(name: str, batch_size: int, steps: int, device: torch.device,
               plan_gib: float | None) -> dict[str, float]:
    """tokens/s, MFU and peak memory of ``steps`` inner steps with the planned memory settings
    (planned for ``plan_gib`` GiB, e.g. the 24 GiB home GPU, else for this GPU's memory)."""
    cfg = preset(name)
    seq = cfg.max_seq_len
    budget = int(plan_gib * GIB) if plan_gib else torch.cuda.get_device_properties(device).total_memory
    plan, _ = choose(cfg, MemorySettings(), batch_size=batch_size, seq_len=seq, device_type="cuda",
                     device_bytes=budget)
    trainer = InnerTrainer(cfg, lr=3e-4, device=device, precision=plan.precision,
                           checkpointing=plan.checkpointing, micro_batch=plan.micro_batch)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, cfg.vocab_size, (batch_size, seq + 1), generator=gen)
    for _ in range(2):  # warm-up: kernels, allocator, AdamW state
        trainer.step(batch)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(steps):
        trainer.step(batch)
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    tps = steps * batch_size * seq / seconds
    peak = peak_tflops(torch.cuda.get_device_name(device))
    return {"tokens_per_s": tps, "mfu": mfu(tps, flops_per_token(cfg, seq), peak), "seq_len": seq,
            "peak_gib": torch.cuda.max_memory_allocated(device) / GIB, "plan_gib": plan.total / GIB,
            "micro_batch": plan.micro_batch, "checkpointing": int(plan.checkpointing), "step_s": seconds / steps}


def validator_run(preset_name: str, miners: int, evaluate: int) -> dict[str, str]:
    """``bench_validator.py --miners`` on the GPU; its summary line's fields."""
    argv = [sys.executable, str(Path(__file__).with_name("bench_validator.py")), "--device", "cuda",
            "--preset", preset_name, "--miners", str(miners), "--evaluate", str(evaluate), "--repeats", "1",
            "--eval-memory-gib", "16", "--threads", "8"]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    print(proc.stdout[-3000:], proc.stderr[-2000:] if proc.returncode else "", sep="\n")
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    return dict(kv.split("=", 1) for kv in last.split() if "=" in kv)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--presets", default="150m,1b", help="miner presets (comma-separated)")
    p.add_argument("--batch-size", type=int, default=8, help="samples per inner step")
    p.add_argument("--steps", type=int, default=10, help="timed inner steps per preset")
    p.add_argument("--plan-memory-gib", type=float, default=24.0,
                   help="plan the memory settings for this much GPU memory (0: this GPU's); the measured "
                        "peak checks the plan")
    p.add_argument("--validator-presets", default="small", help="validator presets ('' to skip)")
    p.add_argument("--miners", type=int, default=256, help="submissions per validator window")
    p.add_argument("--evaluate", type=int, default=64, help="miners evaluated by each evaluator")
    p.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table")
    p.add_argument("--quick", action="store_true", help="3 steps, 64 submissions, 32 evaluated")
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "gpu")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.miners, args.evaluate = 3, 64, 32
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA GPU on this machine; it measures the miner's inner loop and the "
              "validator on a GPU only (run it where one is)", file=sys.stderr)
        return NO_GPU_STATUS
    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = peak_tflops(name, args.peak_tflops)
    print(f"device: {name}, {torch.cuda.get_device_properties(device).total_memory / GIB:.1f} GiB, "
          f"bf16 peak {peak:g} TFLOP/s")
    fields: dict[str, object] = {}
    rows = []
    for preset_name in [x for x in args.presets.split(",") if x]:
        r = miner_loop(preset_name, args.batch_size, args.steps, device, args.plan_memory_gib)
        rows.append([preset_name, r["seq_len"], r["micro_batch"], r["checkpointing"], r["tokens_per_s"], r["mfu"],
                     r["peak_gib"], r["plan_gib"]])
        fields.update({f"tokens_per_s_{preset_name}": r["tokens_per_s"], f"mfu_{preset_name}": r["mfu"],
                       f"peak_gib_{preset_name}": r["peak_gib"]})
        torch.cuda.empty_cache()
    print(bc.markdown_table(["preset", "seq", "micro-batch", "checkpointing", "tokens/s", "MFU",
                             "peak GiB", "plan GiB"], rows))
    for preset_name in [x for x in args.validator_presets.split(",") if x]:
        v = validator_run(preset_name, args.miners, args.evaluate)
        for key in ("miners_per_window_one_at_a_time", "miners_per_window_batched", "same_verdicts"):
            fields[f"{key}_{preset_name}"] = v.get(key, "nan")
    print(f"wrote {bc.write_json(args.out, 'gpu.json', {'machine': bc.machine_info(device), **fields})}")
    print(bc.summary_line(fields))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
