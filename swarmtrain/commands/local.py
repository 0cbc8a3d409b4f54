"""`swarmtrain local`: a devnet, validators and N miners on this machine, end to end.

    swarmtrain local --miners 3 --windows 8 --preset tiny --out runs/local [--validators 2] [--storage s3]
    swarmtrain local --task outputs --miners 3 --windows 4 [--cheat random]   (distillation, docs/outputs.md)

Prints a per-window table (validation loss, contributors, per-miner scores) and the
emission per uid; writes OUT/summary.json, OUT/logs/*.log and OUT/local.png.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.flags import SettingsError, add_settings_flags, load_settings

if TYPE_CHECKING:
    from rich.console import Console

    from protocol.subnet import SubnetConfig
    from swarmtrain.local_settings import LocalSettings
    from swarmtrain.localnet import MinerSpec

PLOT_SKIPPED = "plot: skipped (install matplotlib: pip install 'swarmtrain[plot]')"
NAME = "local"
HELP = "run a whole network locally (devnet, validator, miners) and report training and emission"
ENV_PREFIX = "SWARMTRAIN_LOCAL_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from swarmtrain.local_settings import LocalSettings

    add_settings_flags(parser, LocalSettings, env_prefix=ENV_PREFIX)


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> LocalSettings:
    """Defaults < ``--config`` < ``SWARMTRAIN_LOCAL_*`` < flags; SettingsError names the flag."""
    from swarmtrain.local_settings import LocalSettings

    env = dict(os.environ) if environ is None else environ
    return load_settings(LocalSettings, args, env_prefix=ENV_PREFIX, environ=env)


def subnet_config(settings: LocalSettings) -> SubnetConfig:
    """Defaults (or --subnet-config), the dataset (the config's, else this machine's built-in
    corpus pinned by its hash), then the command-line overrides."""
    from protocol.data import builtin_corpus
    from protocol.subnet import SubnetConfig

    path = settings.subnet_config
    base = SubnetConfig.load(path) if path else SubnetConfig(preset=settings.preset)
    updates: dict[str, object] = {}
    if base.dataset_name == "builtin":
        updates.update(dataset_name="builtin", dataset_hash=builtin_corpus().content_hash)
    if not path:
        updates["preset"] = settings.preset
    for field in ("blocks_per_window", "inner_steps", "inner_lr", "storage"):
        if getattr(settings, field) is not None:
            updates[field] = getattr(settings, field)
    if settings.task == "outputs" and base.task != "outputs":
        from swarmtrain.local_teacher import outputs_fields

        updates.update(outputs_fields(settings.teacher, settings.teacher_steps, settings.outputs_samples,
                                      base.vocab_size))
    return SubnetConfig.model_validate({**base.model_dump(), **updates})


def miners(settings: LocalSettings) -> list[MinerSpec]:
    """The honest miners, then one cheating miner per --cheat (outputs mode)."""
    import sys

    from swarmtrain.localnet import MinerSpec, default_miners

    cheats = [MinerSpec(f"cheat-{name}", honest=False,
                        entry=(sys.executable, "-m", "swarmtrain.cheat_miner", "--cheat", name))
              for name in settings.cheat]
    return default_miners(settings.miners) + cheats


def check_cheats(settings: LocalSettings) -> str | None:
    """Why the --cheat flags cannot run (with the fix), or None."""
    if not settings.cheat:
        return None
    if settings.task != "outputs":
        return "--cheat adds an outputs-mode cheating miner: pass --task outputs"
    from miner.cheats import CHEATS

    unknown = [c for c in settings.cheat if c not in CHEATS]
    return f"unknown --cheat {unknown}: choose from {', '.join(sorted(CHEATS))}" if unknown else None


def _interrupt_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every started process is stopped on the way out."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from node.logs import setup_logging
    from node.subnet_setup import subnet_dataset
    from protocol.data import DataError
    from swarmtrain.commands._chainargs import fail
    from swarmtrain.localnet import LocalNet, LocalNetConfig, LocalNetError
    from swarmtrain.localnet_report import build_summary, plot, render, write_summary

    try:
        settings = settings_from(args)
    except SettingsError as err:
        return fail(str(err))
    problem = check_cheats(settings)
    if problem:
        return fail(problem)
    setup_logging(settings.log_level)
    _interrupt_on_sigterm()
    console = Console()
    if not console.is_terminal:  # piped or logged: keep the table's columns readable
        console = Console(width=120)
    try:
        subnet = subnet_config(settings)
        subnet_dataset(subnet)  # fail here, once, rather than in every node
    except (DataError, ValueError, OSError) as err:
        return fail(str(err))
    cfg = LocalNetConfig.model_validate(
        {**settings.run_settings(), "miners": miners(settings), "subnet": subnet}
    )
    try:
        with LocalNet(cfg) as net:
            result = asyncio.run(net.run())
    except LocalNetError as err:
        return fail(str(err))
    summary = build_summary(result)
    render(summary, console)
    out = Path(settings.out)
    print_files(console, write_summary(summary, out / "summary.json"), plot(summary, out / "local.png"), out / "logs")
    return 0


def print_files(console: Console, summary: Path, png: Path | None, logs: Path) -> None:
    """Where the outputs are. markup=False: rich would read "[plot]" as a style tag."""
    console.print(f"summary: {summary}", markup=False)
    console.print(f"plot: {png}" if png else PLOT_SKIPPED, markup=False)
    console.print(f"logs: {logs}", markup=False)
