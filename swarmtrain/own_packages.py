"""Make sure ``protocol``, ``chain``, ``node``, ``miner`` and ``validator`` are ours.

Those top-level names are generic: other distributions ship packages called ``protocol``
or ``node``, and a file ``node.py`` in the working directory shadows an installed package.
A node importing someone else's ``protocol`` would fail far from the cause, or worse, run.
So the CLI checks at start-up, without importing them, that each name resolves to the
folder next to this ``swarmtrain`` package, and says what shadows it when one does not.

Example:
    >>> check_own_packages()          # raises ShadowedPackageError naming the culprit
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

OWN_PACKAGES = ("protocol", "chain", "node", "miner", "validator")


class ShadowedPackageError(RuntimeError):
    """A top-level name this distribution ships resolves to another package or file."""


def home() -> Path:
    """The folder that holds ``swarmtrain`` and its sibling packages."""
    return Path(__file__).resolve().parent.parent


def where(name: str) -> Path | None:
    """The folder (package) or file (module) ``import name`` would load; None if none."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))).resolve()
    return Path(spec.origin).resolve() if spec.origin else None


def shadowing_problems(names: tuple[str, ...] = OWN_PACKAGES) -> list[str]:
    """One sentence per name that does not resolve to this distribution's package."""
    problems = []
    for name in names:
        expected = home() / name
        found = where(name)
        if found != expected:
            problems.append(_describe(name, found, expected))
    return problems


def _describe(name: str, found: Path | None, expected: Path) -> str:
    if found is None:
        return f"'{name}' cannot be imported (expected {expected}): reinstall swarmtrain"
    others = [d for d in importlib.metadata.packages_distributions().get(name, []) if d != "swarmtrain"]
    shipped = f" (also shipped by {', '.join(sorted(set(others)))})" if others else ""
    return (f"'import {name}' loads {found}{shipped}, not swarmtrain's {expected}: rename or remove it, "
            f"uninstall the other distribution, or run from another directory")


def check_own_packages() -> None:
    """Raise ``ShadowedPackageError`` listing every shadowed name."""
    problems = shadowing_problems()
    if problems:
        raise ShadowedPackageError("; ".join(problems))
