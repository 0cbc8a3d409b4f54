"""Settings every node is started with: chain, wallet, subnet, state directory, run length.

These are the one typed source of the operator's choices: each field carries its default
and its help, and ``protocol.flags`` turns the fields into command-line flags, env vars
and TOML keys. Nested models are btcli's dotted groups (``--wallet.name``,
``--subtensor.network``); a field's ``json_schema_extra`` may name its flags
(``{"flags": ["--state"]}``) where the flag is older than the field.

Example:
    >>> s = NodeSettings(netuid=1, wallet=WalletSettings(name="m1"))
    >>> s.subtensor.endpoint, s.wallet.hotkey
    ('devnet', 'default')
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


class SubtensorSettings(BaseModel):
    """Which chain to talk to, as btcli's ``--subtensor.*`` flags, and how long one call may take."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str = Field(
        "devnet", description="devnet, devnet://HOST:PORT, finney, test, local, or a ws(s):// URL"
    )
    chain_endpoint: str | None = Field(None, description="explicit endpoint; overrides --subtensor.network")
    timeout_s: float = Field(
        30.0, gt=0, description="seconds allowed per chain call", json_schema_extra={"flags": ["--timeout"]}
    )

    @property
    def endpoint(self) -> str:
        """The network the operator asked for (the explicit endpoint first)."""
        return self.chain_endpoint or self.network


class WalletSettings(BaseModel):
    """Which bittensor wallet signs: ``--wallet.name`` (coldkey), ``--wallet.hotkey``, ``--wallet.path``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("default", description="coldkey name")
    hotkey: str = Field("default", description="hotkey name")
    path: Path | None = Field(None, description="wallets directory (default ~/.bittensor/wallets)")

    @property
    def directory(self) -> Path:
        return Path(self.path).expanduser() if self.path else Path.home() / ".bittensor" / "wallets"


class NodeSettings(BaseModel):
    """What a miner or a validator is told at start; subclasses add their own knobs.

    ``state_dir`` defaults to ``~/.swarmtrain/<ROLE>/<wallet>-<hotkey>-netuid<N>``
    (``state_path``), so two nodes of one machine never share state by accident.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    ROLE: ClassVar[str] = "node"

    netuid: int = Field(ge=0, le=65535, description="subnet id")
    subtensor: SubtensorSettings = SubtensorSettings()
    wallet: WalletSettings = WalletSettings()
    subnet_config: Path | None = Field(None, description="the subnet's published config JSON (default: the defaults)")
    state_dir: Path | None = Field(
        None, description="state directory (default ~/.swarmtrain/ROLE/WALLET-HOTKEY-netuidN)",
        json_schema_extra={"flags": ["--state"]},
    )
    max_windows: int | None = Field(None, ge=1, description="stop after this many windows (default: run on)")
    teacher: Path | None = Field(
        None, description="outputs mode: this node's copy of the subnet's teacher (default: the config's path)"
    )
    log_level: LogLevel = Field("INFO", description="log level")

    @property
    def state_path(self) -> Path:
        """``state_dir`` (user-expanded), else the per-wallet default of this role."""
        if self.state_dir is not None:
            return Path(self.state_dir).expanduser()
        name = f"{self.wallet.name}-{self.wallet.hotkey}-netuid{self.netuid}"
        return Path.home() / ".swarmtrain" / self.ROLE / name
