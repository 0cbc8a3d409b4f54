"""`swarmtrain miner`: train on the assigned data each window and submit to validators.

    swarmtrain miner --netuid 1 --subtensor.network devnet \\
        --wallet.name miner1 --wallet.hotkey default --device cuda

Needs no open port (it only connects out). Its state (model, inner optimizer, error
feedback) is checkpointed every window under ``--state``, so a restart resumes.
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
    add_netuid_arg(parser)
    add_network_args(parser)
    add_wallet_args(parser)
    parser.add_argument("--device", default="auto", help="cuda, cuda:N, mps, cpu or auto (default)")
    parser.add_argument("--preset", default=None, help="model preset (must match the subnet config)")
    parser.add_argument("--subnet-config", type=Path, default=None, help="the subnet's published config JSON")
    parser.add_argument("--state", type=Path, default=None, help="state directory (default ~/.swarmtrain/miner/...)")
    parser.add_argument("--max-windows", type=int, default=None, help="stop after this many windows")
    parser.add_argument("--metrics-port", type=int, default=9101,
                        help="Prometheus /metrics over plain HTTP (default 9101; 0 picks a free port)")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address the metrics server binds (default 127.0.0.1: this machine only)")
    parser.add_argument("--no-metrics", action="store_true", help="serve no metrics")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="outputs mode: this node's copy of the subnet's teacher (default: the config's path)")
    parser.add_argument("--log-level", default="INFO")


def settings_from(args: argparse.Namespace):  # -> miner.launch.MinerSettings (imported lazily)
    from miner.launch import MinerSettings

    return MinerSettings(
        network=network_of(args), netuid=args.netuid, wallet_name=args.wallet_name,
        wallet_hotkey=args.wallet_hotkey, wallet_path=Path(args.wallet_path) if args.wallet_path else None,
        device=args.device, preset=args.preset, subnet_config=args.subnet_config,
        state_dir=args.state, chain_timeout_s=args.timeout, max_windows=args.max_windows,
        metrics_host=args.metrics_host, metrics_port=None if args.no_metrics else args.metrics_port,
        teacher=args.teacher,
    )


def run(args: argparse.Namespace, miner_cls: type | None = None) -> int:
    """Parse → build → run → close; domain errors become one ``error:`` line."""
    from chain.errors import ChainError
    from miner.launch import launch
    from miner.service import Miner, MinerError
    from miner.state import MinerStateError
    from miner.sync import SyncError
    from miner.trainer import DeviceUnavailableError
    from node.logs import setup_logging
    from node.metrics import MetricsPortError
    from node.teacher import TeacherError
    from protocol.data import DataError

    setup_logging(args.log_level)
    try:
        asyncio.run(launch(settings_from(args), miner_cls or Miner))
    except (ChainError, MinerError, MinerStateError, SyncError, DeviceUnavailableError, DataError, ValueError,
            MetricsPortError, TeacherError) as err:
        return fail(f"{type(err).__name__}: {err}")
    return 0
