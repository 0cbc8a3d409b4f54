"""``swarmtrain local``: a whole network on one machine, as separate processes.

Starts the devnet, makes wallets, registers every neuron, stakes the validators
(the first, ``validator``, with the most stake: it is the lead), writes the subnet
config, starts the validators and the miners (each a process with its own log under
``OUT/logs``), waits for N trained windows and one tempo of emission, then collects
what the nodes wrote (metrics JSONL, the metagraph) for ``localnet_report``. While it
waits it supervises its children: one that dies is started again with the same command,
state and port (the restart docs/running.md describes), up to ``max_restarts`` times per
node, and the restarts are counted in the result. Every
process it starts is stopped on the way out — also on Ctrl-C or failure (terminate,
then kill) — and, on Linux, dies with this process even when it is killed with
SIGKILL (``PR_SET_PDEATHSIG``, see ``swarmtrain.local_process``).

Example:
    >>> cfg = LocalNetConfig(out=Path("runs/local"), miners=default_miners(3), windows=8,
    ...                      subnet=SubnetConfig(dataset_hash=builtin_corpus().content_hash))
    >>> with LocalNet(cfg) as net:
    ...     run = asyncio.run(net.run())
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from chain.client import Chain
from chain.errors import ChainConnectionError
from chain.types import Metagraph
from chain.wallets import create_wallet, hotkey_address, wallet_exists
from node.logs import progress_line, read_metrics
from protocol.ports import free_port
from protocol.retry import Backoff, poll_until, retry
from protocol.subnet import SubnetConfig
from swarmtrain.local_process import ManagedProcess
from swarmtrain.local_settings import LocalRunSettings

if TYPE_CHECKING:
    import bittensor as bt

log = logging.getLogger("swarmtrain.local")

VALIDATOR = "validator"  # the lead validator's name; the others are validator2, validator3, ...
HOTKEY = "default"
MINER_METRICS = "metrics.jsonl"
VALIDATOR_METRICS = "metrics.jsonl"


RUN_OUTPUTS = ("devnet", "state", "logs", "wallets", "subnet.json", "summary.json", "local.png")


class LocalNetError(RuntimeError):
    """The local network could not be started or did not make progress in time."""


@dataclass(frozen=True)
class MinerSpec:
    """One miner process: its wallet name, whether it is honest, and its entry point.

    ``entry`` is the argv prefix that starts it (default ``python -m swarmtrain miner``);
    the standard miner flags are appended, so a test can start a faulty miner script.
    """

    name: str
    honest: bool = True
    entry: tuple[str, ...] = ()


def default_miners(count: int) -> list[MinerSpec]:
    return [MinerSpec(f"miner{i}") for i in range(1, count + 1)]


def validator_names(count: int) -> list[str]:
    """``validator``, ``validator2``, ...: the first is the lead (it gets the most stake)."""
    return [VALIDATOR] + [f"{VALIDATOR}{i}" for i in range(2, count + 1)]


def is_validator_name(name: str) -> bool:
    """True for the names ``validator_names`` makes."""
    rest = name[len(VALIDATOR):]
    return name.startswith(VALIDATOR) and (rest == "" or rest.isdigit())


def validator_stake(index: int, lead_stake: float) -> float:
    """Stake of the ``index``-th validator (0 = lead): lead_stake / (index + 1), strictly decreasing."""
    return lead_stake / (index + 1)


class LocalNetConfig(LocalRunSettings):
    """Everything ``swarmtrain local`` needs: the run's settings, the miners and the subnet."""

    miners: Sequence[MinerSpec]
    subnet: SubnetConfig
    extra_env: dict[str, str] = Field(default_factory=dict)  # added to every child's environment

    @property
    def window_s(self) -> float:
        return self.subnet.blocks_per_window * self.block_time

    @property
    def validator_names(self) -> list[str]:
        return validator_names(self.validators)


@dataclass
class LocalRunResult:
    """What the run produced, for the report (plain data)."""

    cfg: LocalNetConfig
    uids: dict[str, int]  # process name -> uid
    validator_records: list[dict[str, Any]]  # the lead validator's metrics lines
    miner_records: dict[str, list[dict[str, Any]]]
    metagraph: dict[str, Any]
    first_window: int
    seconds: float
    other_validators: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> metrics lines
    restarts: dict[str, int] = field(default_factory=dict)  # name -> times it was restarted after dying


class LocalNet:
    """Starts and stops the local network's processes; ``run`` drives one whole run.

    Example:
        >>> with LocalNet(cfg) as net:
        ...     result = asyncio.run(net.run())
    """

    def __init__(self, cfg: LocalNetConfig, *, python: str = sys.executable) -> None:
        self.cfg = cfg
        self.python = python
        self.out = Path(cfg.out).resolve()
        self.port = free_port()
        self.url = f"devnet://127.0.0.1:{self.port}"
        self.processes: dict[str, ManagedProcess] = {}
        self.uids: dict[str, int] = {}
        self.s3: Any = None  # node.s3_local.LocalS3 once started (subnet storage = "s3")
        self.ports: dict[str, int] = {}  # validator name -> HTTPS port; miner name -> metrics port
        self.restarts: dict[str, int] = {}  # name -> restarts after the process died
        self.restart_log: list[tuple[float, str, int | None]] = []  # (monotonic time, name, exit code)
        self.held: set[str] = set()  # names the supervisor leaves down (a test or benchmark holds them)

    # ---- paths ------------------------------------------------------------------------
    @property
    def wallet_path(self) -> Path:
        return self.out / "wallets"

    @property
    def subnet_path(self) -> Path:
        return self.out / "subnet.json"

    def state_dir(self, name: str) -> Path:
        return self.out / "state" / name

    def miner_metrics(self, name: str) -> Path:
        return self.state_dir(name) / MINER_METRICS

    def validator_metrics(self, name: str = VALIDATOR) -> Path:
        return self.state_dir(name) / VALIDATOR_METRICS

    # ---- processes ----------------------------------------------------------------------
    def __enter__(self) -> LocalNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        threads = str(self.cfg.threads_per_node)
        env.update({"PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
        if self.cfg.subnet.storage == "s3":
            from node.s3_local import write_env

            env.update(write_env())
        env.update(self.cfg.extra_env)
        return env

    def spawn(self, name: str, argv: Sequence[str]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, self.out / "logs" / f"{name}.log", self.child_env())
        self.processes[name] = proc.start()
        return proc

    def stop_all(self) -> None:
        """Miners first, then the validators, then the object store and the chain; every one of them."""
        validators = [n for n in self.processes if is_validator_name(n)]
        last = ["s3", "devnet"]
        order = [n for n in self.processes if n not in validators and n not in last] + validators + last
        for name in order:
            proc = self.processes.get(name)
            if proc is not None:
                proc.stop()

    def chain_args(self, wallet_name: str) -> list[str]:
        return [
            "--netuid", str(self.cfg.subnet.netuid), "--subtensor.network", self.url,
            "--wallet.name", wallet_name, "--wallet.hotkey", HOTKEY,
            "--wallet.path", str(self.wallet_path),
        ]

    def start_devnet(self) -> ManagedProcess:
        argv = [
            self.python, "-m", "swarmtrain", "devnet", "--port", str(self.port),
            "--state", str(self.out / "devnet"), "--block-time", str(self.cfg.block_time),
            "--tempo", str(self.cfg.tempo),
        ]
        return self.spawn("devnet", argv)

    def start_s3(self) -> ManagedProcess:
        """A local S3-protocol server (moto) with one bucket; each validator publishes under
        its own prefix, as it would to a bucket of its own."""
        from node.s3_local import LocalS3, LocalS3Error, moto_available

        if not moto_available():
            raise LocalNetError("--storage s3 runs a local S3 server: pip install 'swarmtrain[s3-local]'")
        self.s3 = LocalS3(free_port())
        proc = self.spawn("s3", self.s3.argv(self.python))
        try:
            self.s3.wait_ready(alive=proc.alive)
            self.s3.create_bucket()
        except LocalS3Error as exc:
            raise LocalNetError(f"{exc}; last log lines:\n{proc.tail()}") from exc
        return proc

    def validator_s3_args(self, name: str) -> list[str]:
        if self.s3 is None:
            return []
        return ["--s3-endpoint", self.s3.endpoint, "--s3-bucket", self.s3.bucket, "--s3-prefix", name]

    def node_port(self, name: str) -> int:
        """The port a node keeps across restarts: a validator's HTTPS port, a miner's metrics port."""
        if name not in self.ports:
            taken = {self.port, *self.ports.values(), *([self.s3.port] if self.s3 is not None else [])}
            # a port closed a moment ago may be handed out again: never give two nodes one port
            self.ports[name] = next(p for p in (free_port() for _ in range(1000)) if p not in taken)
        return self.ports[name]

    def dashboard_url(self, name: str = VALIDATOR) -> str:
        return f"https://127.0.0.1:{self.node_port(name)}/dashboard"

    def metrics_url(self, name: str) -> str:
        """A miner's Prometheus endpoint (plain HTTP), or a validator's (HTTPS)."""
        scheme = "https" if is_validator_name(name) else "http"
        return f"{scheme}://127.0.0.1:{self.node_port(name)}/metrics"

    def start_validator(self, name: str = VALIDATOR) -> ManagedProcess:
        argv = [
            self.python, "-m", "swarmtrain", "validator", *self.chain_args(name),
            "--port", str(self.node_port(name)), "--host", "127.0.0.1",
            "--subnet-config", str(self.subnet_path), "--state", str(self.state_dir(name)),
            "--device", self.cfg.device, *self.validator_s3_args(name),
        ]
        return self.spawn(name, argv)

    def miner_argv(self, spec: MinerSpec) -> list[str]:
        entry = list(spec.entry) or [self.python, "-m", "swarmtrain", "miner"]
        return [
            *entry, *self.chain_args(spec.name),
            "--subnet-config", str(self.subnet_path), "--state", str(self.state_dir(spec.name)),
            "--device", self.cfg.device, "--metrics-port", str(self.node_port(spec.name)),
        ]

    def start_miner(self, spec: MinerSpec) -> ManagedProcess:
        return self.spawn(spec.name, self.miner_argv(spec))

    def check_alive(self) -> None:
        """Raise with the log tail when a process we need has died."""
        for name, proc in self.processes.items():
            if not proc.alive():
                raise LocalNetError(f"{name} exited with {proc.proc and proc.proc.returncode}; last log lines:\n{proc.tail()}")

    def supervise(self) -> None:
        """Start every dead child again (same command, state and port), except the ``held``
        ones; ``LocalNetError`` with its log tail once one has used up ``max_restarts``."""
        for name, proc in list(self.processes.items()):
            if proc.alive() or name in self.held:
                continue
            code = proc.proc.returncode if proc.proc is not None else None
            if self.restarts.get(name, 0) >= self.cfg.max_restarts:
                raise LocalNetError(f"{name} exited with {code} and was restarted {self.restarts.get(name, 0)} times "
                                    f"(--max-restarts {self.cfg.max_restarts}); last log lines:\n{proc.tail()}")
            self.restarts[name] = self.restarts.get(name, 0) + 1
            self.restart_log.append((time.monotonic(), name, code))
            log.warning(progress_line("a node died: restarting it", name=name, exit=code,
                                      restart=self.restarts[name], log=proc.log_path))
            proc.start()
            if name == "s3":
                self.refill_s3(proc)

    def refill_s3(self, proc: ManagedProcess) -> None:
        """A restarted local S3 server (same port) starts empty, as it keeps objects in memory:
        create the bucket again; each validator's mirror notices the lost objects at its next
        aggregate and uploads its newest checkpoint and the aggregates since."""
        from node.s3_local import LocalS3Error

        try:
            self.s3.wait_ready(alive=proc.alive)
            self.s3.create_bucket()
        except LocalS3Error as exc:  # dead again: the next supervise counts it
            log.warning(progress_line("the restarted S3 server is not ready", reason=exc))

    # ---- chain set-up ---------------------------------------------------------------------
    async def connect(self, timeout: float = 60.0) -> Chain:
        """Connect to the devnet we started, waiting for it to answer."""

        async def attempt() -> Chain:
            self.check_alive()
            return await Chain.connect(self.url, timeout=10.0)

        return await retry(attempt, timeout=timeout, backoff=Backoff.every(0.3), retry_on=(ChainConnectionError,))

    def wallet(self, name: str) -> bt.Wallet:
        from chain.wallets import load_wallet

        if wallet_exists(name, HOTKEY, self.wallet_path):
            return load_wallet(name, HOTKEY, self.wallet_path)
        return create_wallet(name, HOTKEY, self.wallet_path)

    async def register_all(self, chain: Chain) -> None:
        """Register the validators and every miner, then stake the validators (lead: the most)."""
        names = [*self.cfg.validator_names, *[m.name for m in self.cfg.miners]]
        for name in names:
            wallet = self.wallet(name)
            self.uids[name] = await chain.register(wallet, self.cfg.subnet.netuid)
            log.info(progress_line("registered", name=name, uid=self.uids[name], hotkey=hotkey_address(wallet)))
        for i, name in enumerate(self.cfg.validator_names):
            await chain.add_stake(self.wallet(name), self.cfg.subnet.netuid, validator_stake(i, self.cfg.stake_tao))

    async def wait_for_validators(self, chain: Chain, timeout: float = 180.0) -> None:
        """Wait until every validator's endpoint and commitment are on chain, so the miners
        started next see all of them (and the same lead) from their first window."""
        from node.validators import find_validators

        wanted = {hotkey_address(self.wallet(n)) for n in self.cfg.validator_names}

        async def published() -> set[str]:
            self.supervise()
            mg = await chain.metagraph(self.cfg.subnet.netuid)
            return {v.hotkey for v in find_validators(mg, require_permit=False)}

        await poll_until(published, wanted.issubset, timeout=timeout, interval=0.5, on_timeout=lambda _: LocalNetError(
            f"the validators did not publish their endpoints within {timeout:.0f}s"))

    def announce_dashboard(self) -> None:
        """Log where the dashboards are (and open the lead's in a browser when asked)."""
        for name in self.cfg.validator_names:
            log.info(progress_line("dashboard (self-signed certificate: the browser asks once)", name=name,
                                   url=self.dashboard_url(name)))
        if self.cfg.open_dashboard:
            import webbrowser

            webbrowser.open(self.dashboard_url())

    # ---- the run ----------------------------------------------------------------------------
    def clear_previous_run(self) -> None:
        """Remove what an earlier run left in ``out`` (its chain, node state, logs, results):
        every run starts a fresh devnet, and nodes must not resume the old network's state."""
        leftovers = [self.out / n for n in RUN_OUTPUTS if (self.out / n).exists()]
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        if leftovers:
            log.info(progress_line("removed the previous run's outputs", out=self.out,
                                   removed=",".join(p.name for p in leftovers)))

    async def run(self) -> LocalRunResult:
        """Start everything, wait for N windows and a tempo, collect the results."""
        started = time.monotonic()
        self.clear_previous_run()
        self.out.mkdir(parents=True, exist_ok=True)
        self.cfg.subnet.save(self.subnet_path)
        self.start_devnet()
        if self.cfg.subnet.storage == "s3":
            self.start_s3()
        chain = await self.connect()
        try:
            await self.register_all(chain)
            for name in self.cfg.validator_names:
                self.start_validator(name)
            await self.wait_for_validators(chain)
            self.announce_dashboard()
            for spec in self.cfg.miners:
                self.start_miner(spec)
            first = await self.wait_for_windows(self.cfg.windows)
            await self.wait_for_emission(chain)
            metagraph = (await chain.metagraph(self.cfg.subnet.netuid)).to_dict()
        finally:
            await chain.close()
        return self.collect(metagraph, first, time.monotonic() - started)

    def honest(self) -> list[MinerSpec]:
        return [m for m in self.cfg.miners if m.honest]

    def miner_windows(self, name: str, *, submitted_only: bool = False) -> list[int]:
        """Windows the miner finished (optionally only those it submitted an update in)."""
        records = [r for r in read_metrics(self.miner_metrics(name)) if r.get("event") == "window"]
        return sorted({int(r["window"]) for r in records if r.get("submitted") or not submitted_only})

    def progress(self) -> tuple[int | None, int]:
        """(first window every honest miner submitted in, windows since then closed by all).

        A window is done once every validator closed it and every honest miner finished it or
        a later one (a restarted miner skips the windows it was down for; the run goes on)."""
        honest = [m.name for m in self.honest()]
        submitted = [self.miner_windows(n, submitted_only=True) for n in honest]
        if not submitted or any(not ws for ws in submitted):
            return None, 0
        first = max(ws[0] for ws in submitted)
        latest = [max(self.miner_windows(n), default=-1) for n in honest]
        closed = set.intersection(*[
            {int(r["window"]) for r in read_metrics(self.validator_metrics(v)) if "window" in r}
            for v in self.cfg.validator_names
        ])
        window_range = range(first, first + self.cfg.windows)
        done = [w for w in window_range if w in closed and all(w <= last for last in latest)]
        return first, len(done)

    async def wait_for_windows(self, count: int) -> int:
        """Wait until ``count`` windows are closed by every validator and every honest miner."""
        last: tuple[int | None, int] = (None, -1)

        async def progress() -> tuple[int | None, int]:
            nonlocal last
            self.supervise()
            now = self.progress()
            if now != last:
                log.info(progress_line("windows done", done=now[1], of=count, first_trained=now[0]))
                last = now
            return now

        first, _ = await poll_until(
            progress, lambda p: p[0] is not None and p[1] >= count, timeout=self.cfg.timeout_s, interval=0.5,
            on_timeout=lambda p: LocalNetError(f"only {p[1]}/{count} windows finished within {self.cfg.timeout_s:.0f}s"),
        )
        assert first is not None  # poll_until returns only a value ``done`` accepted
        return first

    async def wait_for_emission(self, chain: Chain) -> None:
        """Wait past the next tempo boundary (+ margin) so the epoch pays the weights set;
        then up to three more tempos until a miner earns and every validator has dividends."""
        target = await chain.block() + self.cfg.tempo + 2
        timeout = (self.cfg.tempo + 10) * max(self.cfg.block_time, 0.05) * 4 + 30
        log.info(progress_line("waiting for the next epoch so emission is paid", block=target))
        await chain.wait_for_block(target, timeout=timeout)

        async def paid() -> bool:
            self.supervise()
            return self.paid(await chain.metagraph(self.cfg.subnet.netuid))

        three_tempos = self.cfg.tempo * 3 * self.cfg.block_time
        if not await poll_until(paid, bool, timeout=three_tempos, interval=self.cfg.block_time, on_timeout=None):
            log.warning(progress_line("no miner has emission (or a validator no dividends) after waiting three more tempos"))

    def paid(self, mg: Metagraph) -> bool:
        """Some honest miner has emission and every validator has dividends."""
        miners = any(mg.emission[self.uids[m.name]] > 0 for m in self.honest())
        return miners and all(mg.dividends[self.uids[v]] > 0 for v in self.cfg.validator_names)

    def collect(self, metagraph: dict[str, Any], first: int, seconds: float) -> LocalRunResult:
        miners = {m.name: read_metrics(self.miner_metrics(m.name)) for m in self.cfg.miners}
        return LocalRunResult(
            cfg=self.cfg,
            uids=dict(self.uids),
            validator_records=read_metrics(self.validator_metrics()),
            miner_records=miners,
            metagraph=metagraph,
            first_window=first,
            seconds=seconds,
            other_validators={v: read_metrics(self.validator_metrics(v)) for v in self.cfg.validator_names[1:]},
            restarts=dict(self.restarts),
        )

    def partial_result(self, seconds: float) -> LocalRunResult:
        """What the nodes wrote so far (for the summary of an aborted run; no metagraph)."""
        first, _ = self.progress()
        return self.collect({}, first if first is not None else 0, seconds)
