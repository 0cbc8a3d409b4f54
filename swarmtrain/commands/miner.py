"""`swarmtrain miner`: train on the assigned data each window and submit to validators.

    swarmtrain miner --netuid 1 --subtensor.network devnet \\
        --wallet.name miner1 --wallet.hotkey default --device cuda

Needs no open port (it only connects out). Its state (model, inner optimizer, error
feedback) is checkpointed every window under ``--state``, so a restart resumes. Every
flag comes from ``miner.settings.MinerSettings`` and can also be set as
``SWARMTRAIN_MINER_<FLAG>`` or in a ``--config`` TOML file.
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


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> MinerSettings:
    """Defaults < ``--config`` < ``SWARMTRAIN_MINER_*`` < flags; SettingsError names the flag."""
    from miner.settings import MinerSettings

    env = dict(os.environ) if environ is None else environ
    return load_settings(MinerSettings, args, env_prefix=ENV_PREFIX, environ=env)


def run(args: argparse.Namespace, miner_cls: type[Miner] | None = None) -> int:
    """Parse → build → run → close; domain errors become one ``error:`` line."""
    from chain.errors import ChainError
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
        settings = settings_from(args)
    except SettingsError as err:
        return fail(str(err))
    setup_logging(settings.log_level)
    try:
        asyncio.run(launch(settings, miner_cls or Miner))
    except (ChainError, MinerError, MinerStateError, FetchError, DeviceUnavailableError, DataError, ValueError,
            MetricsPortError, TeacherError) as err:
        return fail(f"{type(err).__name__}: {err}")
    return 0
