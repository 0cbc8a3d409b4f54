"""`swarmtrain miner`: train on the assigned data each window and submit to validators.

    swarmtrain miner --netuid 1 --subtensor.network devnet \\
        --wallet.name miner1 --wallet.hotkey default --device cuda

Needs no open port (it only connects out). Its state (model, inner optimizer, error
feedback) is checkpointed every window under ``--state``, so a restart resumes.

    swarmtrain miner --plan --preset 1b --seq-len 2048           # memory needed vs the device's
    swarmtrain miner --gpus 4 --device cuda ...                  # = torchrun --nproc-per-node 4 -m swarmtrain miner ...
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from swarmtrain.commands._chainargs import (
    add_netuid_arg,
    add_network_args,
    add_wallet_args,
    fail,
    network_of,
)

NAME = "miner"
HELP = "run a miner: train on assigned data, submit compressed pseudo-gradients (no open port)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_netuid_arg(parser, required=False)  # required to mine; --plan needs none
    add_network_args(parser)
    add_wallet_args(parser)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, mps, cpu or auto (default)")
    parser.add_argument("--preset", default=None, help="model preset (must match the subnet config)")
    parser.add_argument("--subnet-config", type=Path, default=None, help="the subnet's published config JSON")
    parser.add_argument("--state", type=Path, default=None, help="state directory (default ~/.swarmtrain/miner/...)")
    parser.add_argument("--max-windows", type=int, default=None, help="stop after this many windows")
    parser.add_argument("--log-level", default="INFO")
    mem = parser.add_argument_group("memory and devices (docs/running.md)")
    mem.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                     help="bf16 autocast (weights and AdamW stay fp32); auto: bf16 on CUDA")
    mem.add_argument("--checkpointing", choices=("auto", "on", "off"), default="auto",
                     help="activation checkpointing per block; auto: only when the batch does not fit without")
    mem.add_argument("--micro-batch", type=int, default=0,
                     help="samples per forward/backward, gradients accumulated over the batch (0: auto)")
    mem.add_argument("--gpus", type=int, default=1,
                     help="train on N GPUs of this machine (starts N ranks under torchrun; rank 0 mines)")
    mem.add_argument("--shard", action="store_true",
                     help="with several GPUs: FSDP2, the model and AdamW state split over them (default DDP)")
    plan = parser.add_argument_group("memory plan")
    plan.add_argument("--plan", action="store_true",
                      help="print the memory the preset and batch need against the device's, then exit")
    plan.add_argument("--seq-len", type=int, default=None, help="(--plan) plan for this sequence length")
    plan.add_argument("--batch-size", type=int, default=None, help="(--plan) plan for this batch size")
    plan.add_argument("--vocab-size", type=int, default=None, help="(--plan) plan for this vocabulary")
    plan.add_argument("--device-memory-gib", type=float, default=None,
                      help="(--plan) device memory to plan against (default: the GPU's, else 24)")


def settings_from(args: argparse.Namespace):  # -> miner.launch.MinerSettings (imported lazily)
    from miner.launch import MinerSettings

    return MinerSettings(
        network=network_of(args), netuid=args.netuid, wallet_name=args.wallet_name,
        wallet_hotkey=args.wallet_hotkey, wallet_path=Path(args.wallet_path) if args.wallet_path else None,
        device=args.device, preset=args.preset, subnet_config=args.subnet_config,
        state_dir=args.state, chain_timeout_s=args.timeout, max_windows=args.max_windows,
        precision=args.precision, checkpointing=args.checkpointing, micro_batch=args.micro_batch,
        shard=args.shard,
    )


def print_plan(args: argparse.Namespace) -> int:
    """``--plan``: the memory report for the subnet's (or the given) preset and batch."""
    from miner.launch import memory_plan, subnet_config
    from miner.memory_plan import GIB, device_memory, render
    from protocol.model import subnet_model_config
    from protocol.subnet import SubnetConfig

    if args.netuid is None:  # a plan needs no subnet id: take the config file's, else the default
        args.netuid = SubnetConfig.load(args.subnet_config).netuid if args.subnet_config else SubnetConfig().netuid
    s = settings_from(args)
    cfg = subnet_config(s)
    updates = {k: v for k, v in (("seq_len", args.seq_len), ("batch_size", args.batch_size),
                                 ("vocab_size", args.vocab_size)) if v is not None}
    cfg = cfg.model_validate({**cfg.model_dump(), **updates})
    subnet_model_config(cfg)  # a bad --vocab-size or preset fails here with its reason
    device = "cuda" if args.device in ("auto", "cuda") else args.device
    device_bytes, label = device_memory(device)
    if args.device_memory_gib is not None:
        device_bytes, label = int(args.device_memory_gib * GIB), "--device-memory-gib"
    chosen, options = memory_plan(s, cfg, "cuda", device_bytes, max(args.gpus, 1))
    print(render(chosen, options, label))
    print(f"plan_fits={int(chosen.fits)} plan_total_gib={chosen.total / GIB:.2f} "
          f"plan_device_gib={device_bytes / GIB:.2f} plan_headroom_gib={chosen.headroom / GIB:.2f} "
          f"micro_batch={chosen.micro_batch} checkpointing={int(chosen.checkpointing)}")
    return 0 if chosen.fits else 1


def launch_ranks(args: argparse.Namespace) -> int:
    """``--gpus N`` outside torchrun: become torchrun running N ranks of this same command
    (exec, so signals reach torchrun, which stops its ranks, and no launcher is left behind)."""
    import os
    import sys

    from miner.distributed import torchrun_argv

    argv = torchrun_argv(sys.argv[1:], args.gpus, sys.executable)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # not reached


def run(args: argparse.Namespace, miner_cls: type | None = None) -> int:
    """Parse → build → run → close; domain errors become one ``error:`` line."""
    from chain.errors import ChainError
    from miner.distributed import dist_env
    from miner.launch import launch
    from miner.service import Miner, MinerError
    from miner.state import MinerStateError
    from miner.sync import SyncError
    from miner.trainer import DeviceUnavailableError
    from node.logs import setup_logging
    from protocol.data import DataError

    setup_logging(args.log_level)
    try:
        if args.plan:
            return print_plan(args)
        if args.netuid is None:
            return fail("--netuid is required to mine")
        if args.gpus > 1 and dist_env() is None:
            return launch_ranks(args)
        asyncio.run(launch(settings_from(args), miner_cls or Miner))
    except (ChainError, MinerError, MinerStateError, SyncError, DeviceUnavailableError, DataError, ValueError) as err:
        return fail(f"{type(err).__name__}: {err}")
    return 0
