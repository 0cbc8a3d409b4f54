"""`swarmtrain validator`: receive, verify, evaluate and aggregate miners' updates; set weights.

    swarmtrain validator --netuid 1 --subtensor.network devnet \\
        --wallet.name validator --wallet.hotkey default --port 8091

Serves HTTPS with a self-signed certificate whose fingerprint it commits on chain.
State (model, scores, checkpoints, aggregates, certificate) lives under ``--state``,
so a restart keeps everything.
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

NAME = "validator"
HELP = "run a validator: HTTPS intake, evaluation, aggregation, checkpoints, weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_netuid_arg(parser)
    add_network_args(parser)
    add_wallet_args(parser)
    parser.add_argument("--port", type=int, default=8091, help="HTTPS port (default 8091)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--external-ip", default=None, help="ip published on chain (default: --host)")
    parser.add_argument("--subnet-config", type=Path, default=None, help="the subnet's published config JSON")
    parser.add_argument("--state", type=Path, default=None, help="state directory (default ~/.swarmtrain/validator/...)")
    parser.add_argument("--device", default="cpu", help="torch device for evaluation (cpu, cuda, cuda:N, mps)")
    parser.add_argument("--max-windows", type=int, default=None, help="stop after closing this many windows")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="outputs mode: this node's copy of the subnet's teacher (default: the config's path)")
    parser.add_argument("--log-level", default="INFO")


def settings_from(args: argparse.Namespace):  # -> (LaunchSettings, ValidatorSettings), imported lazily
    from validator.launch import LaunchSettings, default_state_dir
    from validator.settings import ValidatorSettings

    launch = LaunchSettings(
        network=network_of(args), netuid=args.netuid, wallet_name=args.wallet_name,
        wallet_hotkey=args.wallet_hotkey, wallet_path=Path(args.wallet_path) if args.wallet_path else None,
        subnet_config=args.subnet_config, chain_timeout_s=args.timeout, max_windows=args.max_windows,
    )
    state = Path(args.state).expanduser() if args.state else default_state_dir(launch)
    vs = ValidatorSettings(
        state_dir=state, host=args.host, port=args.port, external_ip=args.external_ip,
        device=args.device, chain_timeout_s=args.timeout, teacher=args.teacher,
    )
    return launch, vs


def run(args: argparse.Namespace) -> int:
    """Parse → build → run → close; domain errors become one ``error:`` line."""
    from chain.errors import ChainError
    from node.devices import DeviceUnavailableError
    from node.logs import setup_logging
    from node.model_state import ModelStateError
    from node.tls import TlsError
    from protocol.data import DataError
    from validator.state import StateDirError

    setup_logging(args.log_level)
    try:
        launch_settings, vs = settings_from(args)
        from validator.launch import launch

        asyncio.run(launch(launch_settings, vs))
    except (ChainError, DataError, ModelStateError, StateDirError, TlsError, OSError, ValueError,
            DeviceUnavailableError) as err:
        return fail(f"{type(err).__name__}: {err}")
    return 0
