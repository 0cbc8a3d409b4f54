"""`swarmtrain validator`: receive, verify, evaluate and aggregate miners' updates; set weights.

    swarmtrain validator --netuid 1 --subtensor.network devnet \\
        --wallet.name validator --wallet.hotkey default --port 8091

Serves HTTPS with a self-signed certificate whose fingerprint it commits on chain.
State (model, scores, checkpoints, aggregates, certificate) lives under ``--state``,
so a restart keeps everything. Every flag comes from ``validator.settings.ValidatorSettings``
and can also be set as ``SWARMTRAIN_VALIDATOR_<FLAG>`` or in a ``--config`` TOML file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import TYPE_CHECKING

from protocol.flags import SettingsError, add_settings_flags, load_settings
from swarmtrain.commands._chainargs import fail

if TYPE_CHECKING:
    from validator.settings import ValidatorSettings

NAME = "validator"
HELP = "run a validator: HTTPS intake, evaluation, aggregation, checkpoints, weights"
ENV_PREFIX = "SWARMTRAIN_VALIDATOR_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from validator.settings import ValidatorSettings

    add_settings_flags(parser, ValidatorSettings, env_prefix=ENV_PREFIX)


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ValidatorSettings:
    """Defaults < ``--config`` < ``SWARMTRAIN_VALIDATOR_*`` < flags; SettingsError names the flag."""
    from validator.settings import ValidatorSettings

    env = dict(os.environ) if environ is None else environ
    return load_settings(ValidatorSettings, args, env_prefix=ENV_PREFIX, environ=env)


def run(args: argparse.Namespace) -> int:
    """Parse → build → run → close; domain errors become one ``error:`` line."""
    from chain.errors import ChainError
    from node.devices import DeviceUnavailableError
    from node.logs import setup_logging
    from node.model_state import ModelStateError
    from node.tls import TlsError
    from protocol.data import DataError
    from validator.launch import launch
    from validator.state import StateDirError

    try:
        settings = settings_from(args)
    except SettingsError as err:
        return fail(str(err))
    setup_logging(settings.log_level)
    try:
        asyncio.run(launch(settings))
    except (ChainError, DataError, ModelStateError, StateDirError, TlsError, OSError, ValueError,
            DeviceUnavailableError) as err:
        return fail(f"{type(err).__name__}: {err}")
    return 0
