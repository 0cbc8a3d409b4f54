"""Imports go one way: protocol <- chain <- node <- miner / validator <- swarmtrain.

Every ``import`` of every .py file in those packages is read with ``ast`` — module level,
inside functions (lazy imports) and under ``TYPE_CHECKING`` alike — and checked against the
order; miner and validator never import each other; and ``chain/`` never starts the
``swarmtrain`` CLI (the devnet has its own entry point, ``python -m chain.devnet``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"protocol": 0, "chain": 1, "node": 2, "miner": 3, "validator": 3, "swarmtrain": 4}
_STARTS_CLI = re.compile(r"(^|\s)-m\s+swarmtrain\b")


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (relative ones resolved)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, _absolute(node, module, is_package)))
    return found


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Why each import of ``module`` (dotted name) breaks the layering; empty when none does."""
    own = module.split(".")[0]
    out = []
    for line, target in imported_modules(source, module, is_package):
        other = target.split(".")[0]
        if other not in LAYERS or other == own:
            continue
        if {own, other} == {"miner", "validator"}:
            out.append(f"{module}:{line} imports {target}: miner and validator never import each other")
        elif LAYERS[other] > LAYERS[own]:
            out.append(f"{module}:{line} imports {target}: {own} sits below {other}")
    if own == "chain":
        out += _cli_starts(source, module)
    return out


def _cli_starts(source: str, module: str) -> list[str]:
    """String constants in chain/ that would start the swarmtrain CLI (``-m swarmtrain``)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if any(a == "-m" and b == "swarmtrain" for a, b in zip(items, items[1:], strict=False)):
                out.append(f"{module}:{node.lineno} starts the swarmtrain CLI: use python -m chain.devnet")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _STARTS_CLI.search(node.value):
            out.append(f"{module}:{node.lineno} starts the swarmtrain CLI: use python -m chain.devnet")
    return out


def project_files() -> list[Path]:
    return sorted(p for pkg in LAYERS for p in (ROOT / pkg).rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_every_import_respects_the_layers():
    files = project_files()
    assert len(files) > 80, "the scan found too few files: is ROOT right?"
    problems = [
        v for path in files
        for v in violations(path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py")
    ]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(
    "module,source,bad",
    [
        ("protocol.codec", "import torch\nfrom protocol import model\n", False),
        ("protocol.codec", "from node.model_state import ModelState\n", True),
        ("chain.client", "def f():\n    from node import tls\n", True),  # lazy import
        ("chain.client", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import miner.service\n", True),
        ("miner.service", "from validator.intake import Intake\n", True),
        ("validator.service", "import miner\n", True),
        ("validator.service", "from node.fetch import ValidatorLink\nfrom chain.errors import ChainError\n", False),
        ("node.fetch", "from .model_state import ModelState\n", False),  # relative, same package
        ("node.fetch", "from ..miner import sync\n", True),  # relative, upward
        ("swarmtrain.cli", "from miner.launch import launch\nfrom chain.devnet.cli import run\n", False),
        ("chain.devnet.testing", "cmd = [sys.executable, '-m', 'swarmtrain', 'devnet']\n", True),
        ("chain.devnet.testing", "os.system('python -m swarmtrain devnet')\n", True),
        ("chain.client", "msg = 'start one with `swarmtrain devnet`'\n", False),
    ],
)
def test_the_checker_catches_what_it_should(module, source, bad):
    assert bool(violations(source, module)) is bad
