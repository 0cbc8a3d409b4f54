"""`swarmtrain local`: a devnet, validators and N miners on this machine, end to end.

    swarmtrain local --miners 3 --windows 8 --preset tiny --out runs/local [--validators 2]
    swarmtrain local --task outputs --miners 3 --windows 4 [--cheat random]   (distillation, docs/outputs.md)

Prints a per-window table (validation loss, contributors, per-miner scores) and the
emission per uid; writes OUT/summary.json, OUT/logs/*.log and OUT/local.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PLOT_SKIPPED = "plot: skipped (install matplotlib: pip install 'swarmtrain[plot]')"
NAME = "local"
HELP = "run a whole network locally (devnet, validator, miners) and report training and emission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--miners", type=int, default=3, help="number of miners (default 3)")
    parser.add_argument("--validators", type=int, default=1,
                        help="number of validators (default 1); the first holds the most stake and leads")
    parser.add_argument("--windows", type=int, default=8, help="trained windows to run (default 8)")
    parser.add_argument("--preset", default="tiny", help="model preset: tiny (default) or small")
    parser.add_argument("--out", type=Path, default=Path("runs/local"), help="output directory")
    parser.add_argument("--block-time", type=float, default=0.5, help="devnet seconds per block")
    parser.add_argument("--tempo", type=int, default=20, help="devnet blocks per epoch")
    parser.add_argument("--blocks-per-window", type=int, default=None, help="override the subnet config")
    parser.add_argument("--inner-steps", type=int, default=None, help="override H, inner steps per window")
    parser.add_argument("--inner-lr", type=float, default=None, help="override the inner AdamW lr")
    parser.add_argument("--subnet-config", type=Path, default=None,
                        help="start from this subnet config JSON (its dataset and tokenizer are kept, "
                             "e.g. one written by 'swarmtrain data subnet-config')")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--device", default="cpu", help="device for the validator and miners")
    parser.add_argument("--open", action="store_true", help="open the lead validator's dashboard in a browser")
    parser.add_argument("--task", choices=("gradients", "outputs"), default="gradients",
                        help="what miners return: gradients (default) or a teacher's outputs (preset = the student)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="outputs: teacher checkpoint or Hugging Face directory (default: a `small` trained "
                             "briefly on the built-in corpus, cached)")
    parser.add_argument("--teacher-steps", type=int, default=1500, help="outputs: training steps of the default teacher")
    parser.add_argument("--outputs-samples", type=int, default=32,
                        help="outputs: samples per miner per window (default 32: a CPU demo)")
    parser.add_argument("--cheat", action="append", default=[], metavar="NAME",
                        help="outputs: add a miner that cheats (random, constant, student, layers, lowbit, other_uid, "
                             "stale, partial, wrong_teacher); repeatable")


def subnet_config(args: argparse.Namespace):  # -> SubnetConfig
    """Defaults (or --subnet-config), the dataset (the config's, else this machine's built-in
    corpus pinned by its hash), then the command-line overrides."""
    from protocol.data import builtin_corpus
    from protocol.subnet import SubnetConfig

    base = SubnetConfig.load(args.subnet_config) if args.subnet_config else SubnetConfig(preset=args.preset)
    updates: dict[str, object] = {}
    if base.dataset_name == "builtin":
        updates.update(dataset_name="builtin", dataset_hash=builtin_corpus().content_hash)
    if not args.subnet_config:
        updates["preset"] = args.preset
    for field, value in (("blocks_per_window", args.blocks_per_window), ("inner_steps", args.inner_steps),
                         ("inner_lr", args.inner_lr)):
        if value is not None:
            updates[field] = value
    if args.task == "outputs" and base.task != "outputs":
        from swarmtrain.local_teacher import outputs_fields

        updates.update(outputs_fields(args.teacher, args.teacher_steps, args.outputs_samples, base.vocab_size))
    return SubnetConfig.model_validate({**base.model_dump(), **updates})


def miners(args: argparse.Namespace) -> list:  # -> list[MinerSpec]
    """The honest miners, then one cheating miner per --cheat (outputs mode)."""
    import sys

    from swarmtrain.localnet import MinerSpec, default_miners

    cheats = [MinerSpec(f"cheat-{name}", honest=False,
                        entry=(sys.executable, "-m", "swarmtrain.cheat_miner", "--cheat", name)) for name in args.cheat]
    return default_miners(args.miners) + cheats


def check_cheats(args: argparse.Namespace) -> str | None:
    """Why the --cheat flags cannot run, or None."""
    if not args.cheat:
        return None
    if args.task != "outputs":
        return "--cheat adds an outputs-mode cheating miner: pass --task outputs"
    from miner.cheats import CHEATS

    unknown = [c for c in args.cheat if c not in CHEATS]
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

    if args.validators < 1:
        return fail("--validators must be at least 1")
    problem = check_cheats(args)
    if problem:
        return fail(problem)
    setup_logging("INFO")
    _interrupt_on_sigterm()
    console = Console()
    if not console.is_terminal:  # piped or logged: keep the table's columns readable
        console = Console(width=120)
    try:
        subnet = subnet_config(args)
        subnet_dataset(subnet)  # fail here, once, rather than in every node
    except (DataError, ValueError, OSError) as err:
        return fail(str(err))
    cfg = LocalNetConfig(
        out=args.out, miners=miners(args), windows=args.windows,
        subnet=subnet, block_time=args.block_time,
        tempo=args.tempo, timeout_s=args.timeout, device=args.device, validators=args.validators,
        open_dashboard=args.open,
    )
    try:
        with LocalNet(cfg) as net:
            result = asyncio.run(net.run())
    except LocalNetError as err:
        return fail(str(err))
    summary = build_summary(result)
    render(summary, console)
    out = Path(args.out)
    print_files(console, write_summary(summary, out / "summary.json"), plot(summary, out / "local.png"), out / "logs")
    return 0


def print_files(console, summary: Path, png: Path | None, logs: Path) -> None:  # console: rich Console
    """Where the outputs are. markup=False: rich would read "[plot]" as a style tag."""
    console.print(f"summary: {summary}", markup=False)
    console.print(f"plot: {png}" if png else PLOT_SKIPPED, markup=False)
    console.print(f"logs: {logs}", markup=False)
