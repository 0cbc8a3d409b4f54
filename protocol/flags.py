"""Command-line flags, env vars and a TOML file, all generated from one pydantic settings model.

Why a small generator of our own rather than pydantic-settings' CLI source, tyro or
jsonargparse: the command tree is plain argparse (``swarmtrain.cli`` discovers the
subcommands and each adds its flags), and the flags are older than the models and keep
their spelling — btcli's ``--wallet.name`` and ``--subtensor.chain_endpoint``, ``--state``
for ``state_dir``, ``--timeout`` for the chain timeout. Each of those libraries brings its
own parser or its own naming rules to bend; the rules below fit in this file, need no new
dependency, and the whole precedence is readable in ``load_settings``.

Naming:
  - a top-level field ``max_body_bytes`` is ``--max-body-bytes``;
  - a field of a nested model keeps btcli's spelling: ``--wallet.name``,
    ``--subtensor.chain_endpoint`` (the field's ``json_schema_extra={"prefix": ""}`` flattens
    a nested model's flags instead);
  - ``json_schema_extra={"flags": ["--state"]}`` names a field's flags (the first is primary);
  - env var: the command's prefix + the primary flag in upper case, each run of other
    characters an underscore: ``--wallet.name`` → ``SWARMTRAIN_VALIDATOR_WALLET_NAME``;
  - TOML (``--config FILE``): the field names, nested models as tables
    (``port = 8443`` / ``[wallet]`` ``name = "v"``);
  - a list field is a repeatable flag (``--cheat a --cheat b``), a comma-separated env var
    (``a,b``) and a TOML array;
  - ``json_schema_extra=ENV_ONLY``: a secret — an env var and a TOML key, no flag (a process's
    arguments are visible to every user of the machine).

Precedence: field default < TOML file < environment < flags. Values are validated once,
by the model; an error names the flag, the env var and the TOML key of the bad value.

Example:
    >>> parser = argparse.ArgumentParser()
    >>> add_settings_flags(parser, ValidatorSettings, env_prefix="SWARMTRAIN_VALIDATOR_")
    >>> args = parser.parse_args(["--netuid", "1", "--port", "8443"])
    >>> load_settings(ValidatorSettings, args, env_prefix="SWARMTRAIN_VALIDATOR_", environ={}).port
    8443
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

M = TypeVar("M", bound=BaseModel)
CONFIG_DEST = "settings_config"
ENV_ONLY: dict[str, Any] = {"env_only": True}  # a field's json_schema_extra: no command-line flag


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names its flag, env var and TOML key."""


@dataclass(frozen=True)
class FlagSpec:
    """One leaf field of a settings model and the names it is given from outside."""

    path: tuple[str, ...]  # field names from the root model, e.g. ("wallet", "name")
    flags: tuple[str, ...]  # e.g. ("--wallet.name",); the first is the primary
    field: FieldInfo
    group: str = ""  # the argparse group of a nested model's flags ("" for top-level fields)

    @property
    def env_only(self) -> bool:
        return bool(_extra(self.field).get("env_only"))

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def dest(self) -> str:
        return "__".join(self.path)

    @property
    def key(self) -> str:
        """The TOML key, dotted through tables."""
        return ".".join(self.path)

    def env_var(self, prefix: str) -> str:
        return prefix + re.sub(r"[^0-9A-Za-z]+", "_", self.flag.lstrip("-")).upper()


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def flag_specs(model: type[BaseModel], *, prefix: str = "", path: tuple[str, ...] = (),
               group: str = "") -> list[FlagSpec]:
    """Every leaf field of ``model`` (nested models walked), in declaration order.

    A nested field's ``json_schema_extra`` may set ``prefix`` (default ``"<name>."``) and
    ``group`` (the title of its flags in ``--help``, default its name).
    """
    specs: list[FlagSpec] = []
    for name, field in model.model_fields.items():
        extra = _extra(field)
        sub = _submodel(field.annotation)
        if sub is not None:
            specs += flag_specs(sub, prefix=prefix + str(extra.get("prefix", f"{name}.")), path=(*path, name),
                                group=str(extra.get("group", name)))
            continue
        own = extra.get("flags") or [f"--{prefix}{name}" if prefix else f"--{name.replace('_', '-')}"]
        specs.append(FlagSpec((*path, name), tuple(own), field, group))
    return specs


def _value_type(annotation: Any) -> Any:
    """``X`` of ``X | None``; the annotation itself otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return inner[0] if len(inner) == 1 else str
    return annotation


def _help(spec: FlagSpec) -> str:
    text = (spec.field.description or "").replace("%", "%%")
    if spec.field.is_required():
        return f"{text} (required)"
    default = spec.field.get_default(call_default_factory=True)
    return text if default is None or isinstance(default, bool) else f"{text} (default {default})"


def argparse_kwargs(spec: FlagSpec) -> dict[str, Any]:
    """How argparse reads the flag; only flags given appear in the namespace (SUPPRESS)."""
    kind = _value_type(spec.field.annotation)
    kwargs: dict[str, Any] = {"dest": spec.dest, "default": argparse.SUPPRESS, "help": _help(spec),
                              "metavar": spec.path[-1].upper()}
    if kind is bool:
        del kwargs["metavar"]
        kwargs["action"] = argparse.BooleanOptionalAction
    elif get_origin(kind) is list:  # repeatable: --cheat a --cheat b
        kwargs["action"] = "append"
    elif get_origin(kind) is Literal:
        kwargs["metavar"] = "{" + ",".join(str(c) for c in get_args(kind)) + "}"
    elif kind in (int, float, Path):
        kwargs["type"] = kind
    return kwargs


def add_flags(parser: argparse.ArgumentParser, specs: Sequence[FlagSpec]) -> None:
    """One argparse option per spec; a nested model's flags go in a group named after it."""
    groups: dict[str, Any] = {}
    for spec in specs:
        if spec.env_only:
            continue
        target: Any = parser
        if spec.group:
            if spec.group not in groups:
                groups[spec.group] = parser.add_argument_group(spec.group)
            target = groups[spec.group]
        target.add_argument(*spec.flags, **argparse_kwargs(spec))


def add_settings_flags(parser: argparse.ArgumentParser, model: type[BaseModel], *, env_prefix: str) -> None:
    """Flags for every field of ``model``, ``--config FILE``, and an epilog naming the env vars."""
    specs = flag_specs(model)
    add_flags(parser, specs)
    parser.add_argument("--config", dest=CONFIG_DEST, type=Path, default=None, metavar="FILE",
                        help="TOML file of these settings (field names as keys); env vars and flags override it")
    secrets = [spec.env_var(env_prefix) for spec in specs if spec.env_only]
    parser.epilog = (f"Every flag can also be set in the environment: --foo-bar as {env_prefix}FOO_BAR, "
                     f"--wallet.name as {env_prefix}WALLET_NAME. Flags win over the environment, "
                     "which wins over --config."
                     + (f" Secrets, only in the environment or --config: {', '.join(secrets)}." if secrets else ""))


def _put(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for name in path[:-1]:
        data = data.setdefault(name, {})
    data[path[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


def namespace_values(specs: Sequence[FlagSpec], args: argparse.Namespace) -> dict[str, Any]:
    """The flags given on the command line, nested by field path."""
    data: dict[str, Any] = {}
    for spec in specs:
        if hasattr(args, spec.dest):
            _put(data, spec.path, getattr(args, spec.dest))
    return data


def env_values(specs: Sequence[FlagSpec], prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given in the environment (empty values count as unset), nested by field path."""
    data: dict[str, Any] = {}
    for spec in specs:
        value = environ.get(spec.env_var(prefix), "")
        if value != "":
            is_list = get_origin(_value_type(spec.field.annotation)) is list
            _put(data, spec.path, [v.strip() for v in value.split(",") if v.strip()] if is_list else value)
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML settings file as a dict; SettingsError (naming the file) if unreadable."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(Path(path).expanduser(), "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except OSError as err:
        raise SettingsError(f"--config {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"--config {path}: not valid TOML: {err}") from None


def _describe(err: ValidationError, specs: Sequence[FlagSpec], env_prefix: str | None) -> str:
    by_path = {spec.path: spec for spec in specs}
    lines = []
    for item in err.errors():
        path = tuple(str(p) for p in item["loc"])
        spec = by_path.get(path)
        if spec is None:
            lines.append(f"unknown setting {'.'.join(path)!r}" if item["type"] == "extra_forbidden"
                         else f"{'.'.join(path) or 'settings'}: {item['msg']}")
            continue
        names = [spec.flag, *([spec.env_var(env_prefix)] if env_prefix else []), f"{spec.key!r} in --config"]
        what = "is required" if item["type"] == "missing" else f"{item['msg']} (got {item.get('input')!r})"
        lines.append(f"{spec.flag} {what} (set by {', '.join(names)})")
    return "; ".join(lines)


def validate(model: type[M], data: Mapping[str, Any], specs: Sequence[FlagSpec],
             env_prefix: str | None = None) -> M:
    """``model.model_validate(data)``; a ValidationError becomes a SettingsError naming the flags."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SettingsError(_describe(err, specs, env_prefix)) from None


def load_settings(model: type[M], args: argparse.Namespace, *, env_prefix: str,
                  environ: Mapping[str, str]) -> M:
    """Defaults < ``--config`` TOML < ``environ`` (``env_prefix`` + flag name) < flags given."""
    specs = flag_specs(model)
    data: dict[str, Any] = {}
    config = getattr(args, CONFIG_DEST, None)
    if config is not None:
        _merge(data, read_toml(config))
    _merge(data, env_values(specs, env_prefix, environ))
    _merge(data, namespace_values(specs, args))
    return validate(model, data, specs, env_prefix)
