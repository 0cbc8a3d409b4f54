"""`swarmtrain miner`: train on the assigned data each window and submit to validators.

    swarmtrain miner --netuid 1 --subtensor.network devnet \\
        --wallet.name miner1 --wallet.hotkey default --device cuda

Needs no open port (it only connects out). Its state (model, inner optimizer, error
feedback) is checkpointed every window under ``--state``, so a restart resumes. Every
flag comes from ``miner.settings.MinerSettings`` and can also be set as
``SWARMTRAIN_MINER_<FLAG>`` or in a ``--config`` TOML file.

    swarmtrain miner --plan --preset 1b --seq-len 2048           # memory needed vs the device's
    swarmtrain miner --gpus 4 --device cuda ...                  # = torchrun --nproc-per-node 4 -m swarmtrain miner ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from protocol.flags import SettingsError, add_settings_flags, load_settings
from swarmtrain.commands._chainargs import fail

if TYPE_CHECKING:
    from miner.service import Miner
    from miner.settings import MinerSettings

NAME = "miner"
HELP = "run a miner: train on assigned data, submit compressed pseudo-gradients (no open port)"
ENV_PREFIX = "SWARMTRAIN_MINER_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from miner.settings import MinerSettings

    add_settings_flags(parser, MinerSettings, env_prefix=ENV_PREFIX)
    plan = parser.add_argument_group("memory plan (prints, then exits; needs no chain or wallet)")
    plan.add_argument("--plan", action="store_true",
                      help="print the memory the preset and batch need against the device's, then exit")
    plan.add_argument("--seq-len", type=int, default=None, help="(--plan) plan for this sequence length")
    plan.add_argument("--batch-size", type=int, default=None, help="(--plan) plan for this batch size")
    plan.add_argument("--vocab-size", type=int, default=None, help="(--plan) plan for this vocabulary")
    plan.add_argument("--device-memory-gib", type=float, default=None,
                      help="(--plan) device memory to plan against (default: the GPU's, else 24)")


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> MinerSettings:
    """Defaults < ``--config`` < ``SWARMTRAIN_MINER_*`` < flags; SettingsError names the flag."""
    from miner.settings import MinerSettings

    env = dict(os.environ) if environ is None else environ
    return load_settings(MinerSettings, args, env_prefix=ENV_PREFIX, environ=env)


def plan_settings(args: argparse.Namespace) -> MinerSettings:
    """The settings ``--plan`` reads; a plan needs no subnet id, so a missing one is taken from
    the subnet config file (else the default config's)."""
    from protocol.subnet import SubnetConfig

    if not hasattr(args, "netuid") and ENV_PREFIX + "NETUID" not in os.environ:
        path = getattr(args, "subnet_config", None)
        args.netuid = SubnetConfig.load(path).netuid if path else SubnetConfig().netuid
    return settings_from(args)


def print_plan(args: argparse.Namespace) -> int:
    """``--plan``: the memory report for the subnet's (or the given) preset and batch; exit
    status 1 when it does not fit."""
    from miner.launch import memory_plan, subnet_config
    from miner.memory_plan import GIB, device_memory, render
    from protocol.model import subnet_model_config

    s = plan_settings(args)
    cfg = subnet_config(s)
    updates = {k: v for k, v in (("seq_len", args.seq_len), ("batch_size", args.batch_size),
                                 ("vocab_size", args.vocab_size)) if v is not None}
    cfg = cfg.model_validate({**cfg.model_dump(), **updates})
    subnet_model_config(cfg)  # a bad --vocab-size or preset fails here with its reason
    device_bytes, label = device_memory("cuda" if s.device in ("auto", "cuda") else s.device)
    if args.device_memory_gib is not None:
        device_bytes, label = int(args.device_memory_gib * GIB), "--device-memory-gib"
    chosen, options = memory_plan(s, cfg, "cuda", device_bytes, s.memory.gpus)
    print(render(chosen, options, label))
    print(f"plan_fits={int(chosen.fits)} plan_total_gib={chosen.total / GIB:.2f} "
          f"plan_device_gib={device_bytes / GIB:.2f} plan_headroom_gib={chosen.headroom / GIB:.2f} "
          f"micro_batch={chosen.micro_batch} checkpointing={int(chosen.checkpointing)}")
    return 0 if chosen.fits else 1


def launch_ranks(gpus: int) -> int:
    """``--gpus N`` outside torchrun: become torchrun running N ranks of this same command
    (exec, so signals reach torchrun, which stops its ranks, and no launcher is left behind)."""
    import sys

    from miner.distributed import torchrun_argv

    argv = torchrun_argv(sys.argv[1:], gpus, sys.executable)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
    return 0  # not reached


def run(args: argparse.Namespace, miner_cls: type[Miner] | None = None) -> int:
    """Parse → build → run → close; domain errors become one ``error:`` line."""
    from chain.errors import ChainError
    from miner.distributed import dist_env
    from miner.launch import launch
    from miner.service import Miner, MinerError
    from miner.state import MinerStateError
    from miner.trainer import DeviceUnavailableError
    from node.fetch import FetchError
    from node.logs import setup_logging
    from node.metrics import MetricsPortError
    from node.teacher import TeacherError
    from protocol.data import DataError

    try:
        if getattr(args, "plan", False):
            setup_logging("WARNING")
            return print_plan(args)
        settings = settings_from(args)
    except SettingsError as err:
        return fail(str(err))
    except (DataError, ValueError) as err:  # --plan: a bad preset, vocabulary or config file
        return fail(f"{type(err).__name__}: {err}")
    setup_logging(settings.log_level)
    try:
        if settings.memory.gpus > 1 and dist_env() is None:
            return launch_ranks(settings.memory.gpus)
        asyncio.run(launch(settings, miner_cls or Miner))
    except (ChainError, MinerError, MinerStateError, FetchError, DeviceUnavailableError, DataError, ValueError,
            MetricsPortError, TeacherError) as err:
        return fail(f"{type(err).__name__}: {err}")
    return 0
