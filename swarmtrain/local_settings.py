"""Settings of ``swarmtrain local``: one typed source for its flags, env vars and TOML keys.

``LocalRunSettings`` is what a run of the local network is told (shared with
``localnet.LocalNetConfig``, which adds the miner specs and the subnet config built from
them); ``LocalSettings`` adds what the command turns into those (a miner count, a preset,
subnet overrides). ``protocol.flags`` generates ``--block-time``, ``SWARMTRAIN_LOCAL_BLOCK_TIME``
and the TOML key ``block_time`` from the field ``block_time``.

Example:
    >>> LocalSettings(miners=2, windows=4).validators
    1
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from node.settings import LogLevel


class LocalRunSettings(BaseModel):
    """Paths, sizes and timing of one local network run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    out: Path = Field(Path("runs/local"), description="output directory (logs, node state, summary.json)")
    windows: int = Field(8, ge=1, description="trained windows to run")
    validators: int = Field(1, ge=1, description="number of validators; the first holds the most stake and leads")
    block_time: float = Field(0.5, gt=0, description="devnet seconds per block")
    tempo: int = Field(20, ge=1, description="devnet blocks per epoch")
    stake_tao: float = Field(100.0, gt=0, description="the lead validator's stake, TAO; validator k gets stake_tao / k")
    device: str = Field("cpu", description="torch device of the validators and miners")
    timeout_s: float = Field(900.0, gt=0, description="give up after this many seconds (start to emission)",
                             json_schema_extra={"flags": ["--timeout"]})
    threads_per_node: int = Field(1, ge=1, description="OMP/torch threads per node process (the cores are shared)")
    open_dashboard: bool = Field(False, description="open the lead validator's dashboard in a browser once it is up",
                                 json_schema_extra={"flags": ["--open"]})


class LocalSettings(LocalRunSettings):
    """``swarmtrain local``'s flags: the run's settings, the miner count and the subnet's overrides."""

    miners: int = Field(3, ge=1, description="number of miners")
    preset: str = Field("tiny", description="model preset: tiny or small")
    subnet_config: Path | None = Field(
        None, description="start from this subnet config JSON (its dataset and tokenizer are kept, "
        "e.g. one written by 'swarmtrain data subnet-config')",
    )
    blocks_per_window: int | None = Field(None, ge=1, description="override the subnet config's blocks per window")
    inner_steps: int | None = Field(None, ge=1, description="override H, inner steps per window")
    inner_lr: float | None = Field(None, gt=0, description="override the inner AdamW lr")
    storage: Literal["validator", "s3"] | None = Field(
        None, description="where aggregates and checkpoints live: on the validator (default) or in an "
        "S3-compatible store (a local S3 server is started for the run)")
    log_level: LogLevel = Field("INFO", description="log level of this process (the nodes log at INFO)")
    task: Literal["gradients", "outputs"] = Field(
        "gradients", description="what miners return: gradients or a teacher's outputs (preset = the student)"
    )
    teacher: Path | None = Field(
        None, description="outputs: teacher model file or Hugging Face directory (default: a 0.8 M-parameter model trained "
        "briefly on the built-in corpus, cached)",
    )
    teacher_steps: int = Field(1500, ge=1, description="outputs: training steps of the default teacher")
    outputs_samples: int = Field(32, ge=1, description="outputs: samples per miner per window (32: a CPU demo)")
    cheat: list[str] = Field(
        [], description="outputs: add a miner that cheats (random, constant, student, layers, lowbit, other_uid, "
        "stale, partial, wrong_teacher); repeat the flag for more",
    )

    def run_settings(self) -> dict[str, object]:
        """The fields ``LocalNetConfig`` shares with this command, by name."""
        return {name: getattr(self, name) for name in LocalRunSettings.model_fields}
