"""The devnet chain: a transaction pool, block production, epochs and reads over one state.

Synchronous and single-threaded on purpose: the server calls it from its event loop and
every call is a few SQLite statements. A block is one SQLite transaction (extrinsics in
savepoints, then the epochs due at that block, then the block row), so a crash loses at
most the block being built; extrinsics still in the pool are lost like a mempool's.

Example:
    >>> chain = Devnet.open(tmp_dir, DevnetConfig(tempo=10))   # doctest: +SKIP
    >>> chain.submit(extrinsic)                                # doctest: +SKIP
    >>> chain.produce_block()                                  # doctest: +SKIP
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import bittensor_core

from chain.devnet import pallets
from chain.devnet.calls import ALICE, CallRejected, parse_call
from chain.devnet.database import ChainState
from chain.devnet.epoch import EpochSummary, epoch_due, run_epoch
from chain.devnet.params import GENESIS_NETUID, DevnetConfig, default_hyperparams
from chain.devnet.runtime_api import RuntimeApi
from chain.devnet.storage_queries import StorageReader
from chain.devnet.wire import Extrinsic

ERA_PERIOD = 256  # an extrinsic signed against a block older than this is refused
EMISSION_RULES = "subtensor-1"  # stored in meta: the emission rules this state follows


class StateInUseError(RuntimeError):
    """Another devnet process holds this state directory."""


class StateFormatError(RuntimeError):
    """A state directory this devnet cannot use (written by a newer one)."""


class PoolRejection(Exception):
    """An extrinsic refused before inclusion; ``name`` is the pool error (``BadProof``...)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


@dataclass
class Included:
    """The outcome of one included extrinsic, as sent back to the submitter."""

    hash: str
    block_number: int
    block_hash: str
    extrinsic_idx: int
    success: bool
    error: dict[str, str] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"hash": self.hash, "block_number": self.block_number,
                "block_hash": self.block_hash, "extrinsic_idx": self.extrinsic_idx,
                "success": self.success, "error": self.error, "events": self.events}


@dataclass
class BlockReport:
    number: int
    hash: str
    included: list[Included]
    epochs: list[EpochSummary]


def block_hash_of(genesis: str, number: int, parent: str, timestamp_ms: int) -> str:
    data = f"{genesis}:{number}:{parent}:{timestamp_ms}".encode()
    return "0x" + hashlib.blake2b(data, digest_size=32).hexdigest()


class Devnet:
    """The chain: pool + block producer + reads. Not thread-safe; one event loop drives it."""

    def __init__(self, state: ChainState, cfg: DevnetConfig, lock: IO[bytes] | None = None):
        self.state = state
        self.cfg = cfg
        self._lock = lock
        self.pool: list[Extrinsic] = []
        self.storage = StorageReader(state, cfg, self.head)
        self.runtime = RuntimeApi(state, cfg, self.head)
        self.genesis_hash = state.meta("genesis_hash") or ""

    @classmethod
    def open(cls, state_dir: str | Path, cfg: DevnetConfig) -> Devnet:
        """Open (or create, with genesis) the chain stored under ``state_dir``."""
        lock = _lock_state_dir(Path(state_dir))
        state = ChainState.open(state_dir)
        try:
            if state.head() is None:
                _genesis(state, cfg)
            _migrate_emission_rules(state, Path(state_dir))
            _fill_new_hyperparams(state, cfg)
        except BaseException:
            state.close()
            lock.close()
            raise
        return cls(state, cfg, lock)

    def close(self) -> None:
        self.state.close()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    # Reads --------------------------------------------------------------------

    def head(self) -> int:
        head = self.state.head()
        return 0 if head is None else head[0]

    def head_hash(self) -> str:
        head = self.state.head()
        return "" if head is None else head[1]

    def block_hash(self, number: int | None) -> str | None:
        if number is None:
            return self.head_hash()
        row = self.state.block(number)
        return None if row is None else str(row["hash"])

    def resolve_block(self, number: int | None = None, block_hash: str | None = None) -> sqlite3.Row | None:
        """The stored block row for a number or hash (the head when both are None)."""
        if block_hash is not None:
            return self.state.block_by_hash(block_hash)
        return self.state.block(self.head() if number is None else number)

    def account_next_index(self, address: str) -> int:
        _free, nonce = pallets.balance(self.state, self.cfg, address)
        return nonce + sum(1 for x in self.pool if x.signer == address)

    # Pool ---------------------------------------------------------------------

    def submit(self, ext: Extrinsic) -> str:
        """Check an extrinsic and queue it for the next block; returns its hash."""
        self._check_origin(ext)
        try:
            parse_call(ext.module, ext.function, ext.params)
        except CallRejected as error:
            raise PoolRejection("Call", str(error)) from None
        expected = self.account_next_index(ext.signer)
        if ext.nonce < expected:
            raise PoolRejection("Stale", f"Transaction is outdated: nonce {ext.nonce} "
                                f"already used (next is {expected})")
        if ext.nonce > expected:
            raise PoolRejection("Future", f"nonce {ext.nonce} is ahead of {expected}")
        self.pool.append(ext)
        return ext.hash()

    def _check_origin(self, ext: Extrinsic) -> None:
        if ext.genesis_hash != self.genesis_hash:
            raise PoolRejection("BadProof", "signed for another chain (genesis hash differs)")
        if ext.era_block > self.head() or self.head() - ext.era_block > ERA_PERIOD:
            raise PoolRejection("AncientBirthBlock", f"era block {ext.era_block} is not "
                                f"within {ERA_PERIOD} blocks of the head {self.head()}")
        try:
            signature = bytes.fromhex(ext.signature.removeprefix("0x"))
            valid = bittensor_core.verify(ext.payload(), signature, ext.signer, ext.crypto_type)
        except (ValueError, TypeError) as error:
            raise PoolRejection("BadProof", f"Transaction has a bad signature ({error})") from None
        if not valid:
            raise PoolRejection("BadProof", "Transaction has a bad signature")

    # Blocks -------------------------------------------------------------------

    def produce_block(self, timestamp_ms: int | None = None) -> BlockReport:
        """Run due epochs, apply the pool and store the next block, atomically.

        Epochs come first, as subtensor runs them when a block is initialized: an epoch
        never sees the extrinsics of its own block.
        """
        number = self.head() + 1
        parent = self.head_hash()
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        block_hash = block_hash_of(self.genesis_hash, number, parent, stamp)
        pool, self.pool = self.pool, []
        with self.state.transaction():
            epochs = [
                run_epoch(self.state, self.cfg, netuid, number)
                for netuid in self.state.netuids()
                if epoch_due(netuid, int(self._tempo(netuid)), number)
            ]
            included = [self._apply(ext, number, block_hash, i) for i, ext in enumerate(pool)]
            self.state.add_block(number, block_hash, parent, stamp)
        return BlockReport(number, block_hash, included, epochs)

    def _tempo(self, netuid: int) -> int:
        subnet = self.state.subnet(netuid)
        return 0 if subnet is None else int(subnet.hyperparams["tempo"])

    def _apply(self, ext: Extrinsic, number: int, block_hash: str, idx: int) -> Included:
        ctx = pallets.Context(self.state, self.cfg, number, ext.signer, extrinsic_idx=idx)
        error = None
        try:
            with self.state.savepoint():
                pallets.dispatch(ctx, parse_call(ext.module, ext.function, ext.params))
        except pallets.DispatchError as failure:
            error = {"name": failure.name, "docs": failure.message}
        except Exception as bug:  # a devnet bug fails this extrinsic, not the whole block
            error = {"name": "Other", "docs": f"devnet internal error: {bug!r}"}
        if error is None:
            ctx.events.append(("System", "ExtrinsicSuccess", {}))
        else:
            ctx.events = [("System", "ExtrinsicFailed", {"dispatch_error": error["name"]})]
        free, nonce = pallets.balance(self.state, self.cfg, ext.signer)
        self.state.set_account(ext.signer, free=free, nonce=nonce + 1)  # used even on failure
        events = [self._event(number, idx, *e) for e in ctx.events]
        self.state.log_extrinsic({
            "hash": ext.hash(), "block": number, "idx": idx, "signer": ext.signer,
            "nonce": ext.nonce, "module": ext.module, "function": ext.function,
            "params": ext.params, "success": int(error is None),
            "error": error and error["name"], "message": error and error["docs"],
        })
        return Included(ext.hash(), number, block_hash, idx, error is None, error, events)

    def _event(self, block: int, idx: int, module: str, event: str,
               attributes: dict[str, Any]) -> dict[str, Any]:
        self.state.add_event(block, idx, module, event, attributes)
        return event_record(idx, module, event, attributes)

    def events(self, block_hash: str | None) -> list[dict[str, Any]]:
        row = self.resolve_block(block_hash=block_hash)
        if row is None:
            return []
        return [
            event_record(r["extrinsic_idx"], r["module"], r["event"], json.loads(r["attributes"]))
            for r in self.state.events(row["number"])
        ]

    def find_extrinsic(self, ext_hash: str) -> dict[str, Any] | None:
        row = self.state.extrinsic(ext_hash)
        if row is None:
            return None
        block = self.state.block(row["block"])
        error = {"name": row["error"], "docs": row["message"]} if row["error"] else None
        return Included(row["hash"], row["block"], block["hash"] if block else "", row["idx"],
                        bool(row["success"]), error).to_json()

    def get_block(self, number: int | None, block_hash: str | None) -> dict[str, Any] | None:
        row = self.resolve_block(number, block_hash)
        if row is None:
            return None
        inherent = {"call": {"call_module": "Timestamp", "call_function": "set",
                             "call_args": [{"name": "now", "value": row["timestamp_ms"]}]}}
        extrinsics = [inherent] + [
            {"extrinsic_hash": x["hash"], "address": x["signer"],
             "call": {"call_module": x["module"], "call_function": x["function"],
                      "call_args": json.loads(x["params"])}}
            for x in self.state.extrinsics_in(row["number"])
        ]
        header = {"number": row["number"], "hash": row["hash"], "parentHash": row["parent"]}
        return {"header": header, "extrinsics": extrinsics}


def event_record(idx: int | None, module: str, event: str, attributes: dict) -> dict[str, Any]:
    """An event in the SDK's decoded shape."""
    phase = {"ApplyExtrinsic": idx} if idx is not None else "Finalization"
    return {"phase": phase, "extrinsic_idx": idx,
            "event": {"module_id": module, "event_id": event, "attributes": attributes}}


def _genesis(state: ChainState, cfg: DevnetConfig) -> None:
    """Block 0 and subnet 1, owned by the devnet sudo key."""
    stamp = int(time.time() * 1000)
    seed = hashlib.blake2b(f"swarmtrain-devnet:{stamp}".encode(), digest_size=32).hexdigest()
    genesis = "0x" + seed
    with state.transaction():
        state.set_meta("genesis_hash", genesis)
        state.set_meta("config", cfg.model_dump_json())
        state.set_meta("emission_rules", EMISSION_RULES)
        state.add_block(0, genesis, "0x" + "00" * 32, stamp)
        pallets.create_subnet(state, cfg, GENESIS_NETUID, ALICE, ALICE, 0)


def _fill_new_hyperparams(state: ChainState, cfg: DevnetConfig) -> None:
    """Give subnets stored by an older devnet the hyperparameters added since (defaults)."""
    defaults = default_hyperparams(cfg)
    with state.transaction():
        for netuid in state.netuids():
            subnet = state.subnet(netuid)
            if subnet is not None and not defaults.keys() <= subnet.hyperparams.keys():
                subnet.hyperparams = {**defaults, **subnet.hyperparams}
                state.put_subnet(subnet)


def _migrate_emission_rules(state: ChainState, state_dir: Path) -> None:
    """Bring a state stored before the chain's emission rules to them, once.

    Devnets before them stored ``owner_cut_enabled = False`` on every subnet but never read
    it (no owner cut was paid); the chain's default is on, so such subnets get it on. Stored
    bonds keep working: classic Yuma column-normalizes whatever scale it reads.
    """
    found = state.meta("emission_rules")
    if found == EMISSION_RULES:
        return
    if found is not None:
        raise StateFormatError(
            f"{state_dir} was written by a newer devnet (emission rules {found!r}, this one "
            f"runs {EMISSION_RULES!r}): run that version, or start on a new --state directory")
    with state.transaction():
        for netuid in state.netuids():
            subnet = state.subnet(netuid)
            if subnet is not None:
                subnet.hyperparams["owner_cut_enabled"] = True
                state.put_subnet(subnet)
        state.set_meta("emission_rules", EMISSION_RULES)


def _lock_state_dir(state_dir: Path) -> IO[bytes]:
    """An exclusive lock on the state directory for this process's lifetime (the OS drops it
    when the process dies, so a kill -9 never leaves a stale lock)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handle = open(state_dir / "devnet.lock", "wb")  # noqa: SIM115 - held until close()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StateInUseError(f"another devnet is running on {state_dir}") from None
    return handle
