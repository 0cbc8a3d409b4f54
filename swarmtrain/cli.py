"""The `swarmtrain` console script: parse, dispatch to a subcommand module, return its exit code."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from swarmtrain import __version__, commands
from swarmtrain.own_packages import ShadowedPackageError, check_own_packages


def discover_commands() -> list[ModuleType]:
    """Every module in ``swarmtrain.commands`` that defines NAME, sorted by name."""
    found = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            found.append(module)
    return sorted(found, key=lambda m: m.NAME)


def build_parser(modules: Sequence[ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmtrain",
        description="Node for a decentralized training subnet: devnet, miner, validator, local network.",
    )
    parser.add_argument("--version", action="version", version=f"swarmtrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in modules:
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        check_own_packages()  # before any subcommand imports protocol, chain, node, ...
    except ShadowedPackageError as err:
        print(f"swarmtrain: {err}", file=sys.stderr)
        return 2
    parser = build_parser(discover_commands())
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
