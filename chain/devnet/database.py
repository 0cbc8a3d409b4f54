"""The devnet's state: one SQLite database (WAL) under the ``--state`` directory.

A block is one SQLite transaction; each extrinsic inside it runs in its own
savepoint, so a failing extrinsic leaves nothing behind and a ``kill -9`` at any
moment leaves the last committed block intact. Amounts are integers in rao
(1 TAO = 1e9 rao); scores are u16 (65535 = 1.0) as on the real chain.

Example:
    >>> st = ChainState.open(tmp_dir)          # doctest: +SKIP
    >>> with st.transaction():                 # doctest: +SKIP
    ...     st.set_account("5F...", free=10, nonce=0)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

DB_NAME = "devnet.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    number INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, parent TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY, free INTEGER NOT NULL, nonce INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS subnets (
    netuid INTEGER PRIMARY KEY, owner_coldkey TEXT NOT NULL, owner_hotkey TEXT NOT NULL,
    registered_at INTEGER NOT NULL, last_epoch_block INTEGER NOT NULL,
    epoch_index INTEGER NOT NULL, name TEXT NOT NULL, symbol TEXT NOT NULL,
    hyperparams TEXT NOT NULL, regs_this_block INTEGER NOT NULL DEFAULT 0,
    regs_block INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS neurons (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, hotkey TEXT NOT NULL, coldkey TEXT NOT NULL,
    registered_at INTEGER NOT NULL, last_update INTEGER NOT NULL,
    axon TEXT, rank INTEGER NOT NULL DEFAULT 0, trust INTEGER NOT NULL DEFAULT 0,
    consensus INTEGER NOT NULL DEFAULT 0, incentive INTEGER NOT NULL DEFAULT 0,
    dividends INTEGER NOT NULL DEFAULT 0, validator_trust INTEGER NOT NULL DEFAULT 0,
    emission INTEGER NOT NULL DEFAULT 0, validator_permit INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1, pruning_score INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (netuid, uid), UNIQUE (netuid, hotkey));
CREATE TABLE IF NOT EXISTS owners (hotkey TEXT PRIMARY KEY, coldkey TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stake (
    hotkey TEXT NOT NULL, coldkey TEXT NOT NULL, netuid INTEGER NOT NULL,
    alpha INTEGER NOT NULL, PRIMARY KEY (hotkey, coldkey, netuid));
CREATE TABLE IF NOT EXISTS weights (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, dest INTEGER NOT NULL,
    value INTEGER NOT NULL, set_at INTEGER NOT NULL, PRIMARY KEY (netuid, uid, dest));
CREATE TABLE IF NOT EXISTS weight_rows (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, set_at INTEGER NOT NULL,
    PRIMARY KEY (netuid, uid));
CREATE TABLE IF NOT EXISTS bonds (
    netuid INTEGER NOT NULL, uid INTEGER NOT NULL, dest INTEGER NOT NULL,
    value REAL NOT NULL, PRIMARY KEY (netuid, uid, dest));
CREATE TABLE IF NOT EXISTS commitments (
    netuid INTEGER NOT NULL, hotkey TEXT NOT NULL, block INTEGER NOT NULL,
    deposit INTEGER NOT NULL, fields TEXT NOT NULL, PRIMARY KEY (netuid, hotkey));
CREATE TABLE IF NOT EXISTS extrinsics (
    hash TEXT PRIMARY KEY, block INTEGER NOT NULL, idx INTEGER NOT NULL, signer TEXT NOT NULL,
    nonce INTEGER NOT NULL, module TEXT NOT NULL, function TEXT NOT NULL, params TEXT NOT NULL,
    success INTEGER NOT NULL, error TEXT, message TEXT);
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL, idx INTEGER NOT NULL, extrinsic_idx INTEGER,
    module TEXT NOT NULL, event TEXT NOT NULL, attributes TEXT NOT NULL,
    PRIMARY KEY (block, idx));
CREATE INDEX IF NOT EXISTS extrinsics_by_block ON extrinsics (block, idx);
"""

@dataclass
class Neuron:
    """One uid of a subnet; scores are u16, emission in rao per epoch."""

    netuid: int
    uid: int
    hotkey: str
    coldkey: str
    registered_at: int
    last_update: int
    axon: dict[str, int] | None = None
    rank: int = 0
    trust: int = 0
    consensus: int = 0
    incentive: int = 0
    dividends: int = 0
    validator_trust: int = 0
    emission: int = 0
    validator_permit: bool = False
    active: bool = True
    pruning_score: int = 0


@dataclass
class Subnet:
    """A subnet's identity, epoch bookkeeping and hyperparameters (by SDK names)."""

    netuid: int
    owner_coldkey: str
    owner_hotkey: str
    registered_at: int
    last_epoch_block: int
    epoch_index: int
    name: str
    symbol: str
    hyperparams: dict[str, Any] = field(default_factory=dict)
    regs_this_block: int = 0
    regs_block: int = 0


_NEURON_COLUMNS = [f.name for f in fields(Neuron)]
_SUBNET_COLUMNS = [f.name for f in fields(Subnet)]


class ChainState:
    """Typed access to the devnet database; callers group writes with :meth:`transaction`."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn = conn
        self.path = path

    @classmethod
    def open(cls, state_dir: str | Path) -> ChainState:
        path = Path(state_dir)
        path.mkdir(parents=True, exist_ok=True)
        db = path / DB_NAME
        conn = sqlite3.connect(db, isolation_level=None, timeout=10.0, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process kill
        conn.executescript(SCHEMA)
        return cls(conn, db)

    def close(self) -> None:
        self.conn.close()

    # Transactions -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit (a block); rolls back on any exception."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self, name: str = "extrinsic") -> Iterator[None]:
        """A nested atomic unit (one extrinsic) inside :meth:`transaction`."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    # Meta ---------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key=?", (key,))
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # Blocks -------------------------------------------------------------------

    def head(self) -> tuple[int, str, int] | None:
        """(number, hash, timestamp_ms) of the newest block, or None before genesis."""
        row = self._one("SELECT * FROM blocks ORDER BY number DESC LIMIT 1")
        return None if row is None else (row["number"], row["hash"], row["timestamp_ms"])

    def add_block(self, number: int, block_hash: str, parent: str, timestamp_ms: int) -> None:
        self.conn.execute(
            "INSERT INTO blocks (number, hash, parent, timestamp_ms) VALUES (?, ?, ?, ?)",
            (number, block_hash, parent, timestamp_ms),
        )

    def block(self, number: int) -> sqlite3.Row | None:
        return self._one("SELECT * FROM blocks WHERE number=?", (number,))

    def block_by_hash(self, block_hash: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM blocks WHERE hash=?", (block_hash,))

    # Accounts -----------------------------------------------------------------

    def account(self, address: str) -> tuple[int, int] | None:
        """(free rao, nonce) or None for an account never written."""
        row = self._one("SELECT free, nonce FROM accounts WHERE address=?", (address,))
        return None if row is None else (row["free"], row["nonce"])

    def set_account(self, address: str, *, free: int, nonce: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO accounts (address, free, nonce) VALUES (?, ?, ?)",
            (address, free, nonce),
        )

    def total_issuance(self) -> int:
        row = self._one("SELECT COALESCE(SUM(free), 0) AS s FROM accounts")
        return int(row["s"]) if row else 0

    # Subnets ------------------------------------------------------------------

    def netuids(self) -> list[int]:
        return [r["netuid"] for r in self._all("SELECT netuid FROM subnets ORDER BY netuid")]

    def subnet(self, netuid: int) -> Subnet | None:
        row = self._one("SELECT * FROM subnets WHERE netuid=?", (netuid,))
        if row is None:
            return None
        values = {c: row[c] for c in _SUBNET_COLUMNS}
        values["hyperparams"] = json.loads(row["hyperparams"])
        return Subnet(**values)

    def put_subnet(self, subnet: Subnet) -> None:
        values = [getattr(subnet, c) for c in _SUBNET_COLUMNS]
        values[_SUBNET_COLUMNS.index("hyperparams")] = json.dumps(subnet.hyperparams)
        marks = ", ".join("?" for _ in _SUBNET_COLUMNS)
        self.conn.execute(
            f"INSERT OR REPLACE INTO subnets ({', '.join(_SUBNET_COLUMNS)}) VALUES ({marks})",
            values,
        )

    # Neurons ------------------------------------------------------------------

    def neurons(self, netuid: int) -> list[Neuron]:
        rows = self._all("SELECT * FROM neurons WHERE netuid=? ORDER BY uid", (netuid,))
        return [_neuron(r) for r in rows]

    def neuron(self, netuid: int, uid: int) -> Neuron | None:
        row = self._one("SELECT * FROM neurons WHERE netuid=? AND uid=?", (netuid, uid))
        return None if row is None else _neuron(row)

    def neuron_by_hotkey(self, netuid: int, hotkey: str) -> Neuron | None:
        row = self._one("SELECT * FROM neurons WHERE netuid=? AND hotkey=?", (netuid, hotkey))
        return None if row is None else _neuron(row)

    def neuron_count(self, netuid: int) -> int:
        row = self._one("SELECT COUNT(*) AS n FROM neurons WHERE netuid=?", (netuid,))
        return int(row["n"]) if row else 0

    def put_neuron(self, neuron: Neuron) -> None:
        values = [getattr(neuron, c) for c in _NEURON_COLUMNS]
        axon_at = _NEURON_COLUMNS.index("axon")
        values[axon_at] = None if neuron.axon is None else json.dumps(neuron.axon)
        marks = ", ".join("?" for _ in _NEURON_COLUMNS)
        self.conn.execute(
            f"INSERT OR REPLACE INTO neurons ({', '.join(_NEURON_COLUMNS)}) VALUES ({marks})",
            values,
        )

    def hotkey_netuids(self, hotkey: str) -> list[int]:
        rows = self._all("SELECT netuid FROM neurons WHERE hotkey=? ORDER BY netuid", (hotkey,))
        return [r["netuid"] for r in rows]

    # Ownership and stake ------------------------------------------------------

    def owner(self, hotkey: str) -> str | None:
        row = self._one("SELECT coldkey FROM owners WHERE hotkey=?", (hotkey,))
        return None if row is None else str(row["coldkey"])

    def set_owner(self, hotkey: str, coldkey: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO owners (hotkey, coldkey) VALUES (?, ?)",
                          (hotkey, coldkey))

    def owned_hotkeys(self, coldkey: str) -> list[str]:
        rows = self._all("SELECT hotkey FROM owners WHERE coldkey=? ORDER BY hotkey", (coldkey,))
        return [r["hotkey"] for r in rows]

    def stake(self, hotkey: str, netuid: int, coldkey: str | None = None) -> int:
        """Alpha (rao) staked on ``hotkey`` in ``netuid``, from one coldkey or all."""
        sql = "SELECT COALESCE(SUM(alpha), 0) AS s FROM stake WHERE hotkey=? AND netuid=?"
        args: tuple = (hotkey, netuid)
        if coldkey is not None:
            sql, args = sql + " AND coldkey=?", (*args, coldkey)
        row = self._one(sql, args)
        return int(row["s"]) if row else 0

    def add_stake(self, hotkey: str, coldkey: str, netuid: int, delta: int) -> None:
        current = self.stake(hotkey, netuid, coldkey)
        if current + delta < 0:
            raise ValueError("stake would go negative")
        self.conn.execute(
            "INSERT OR REPLACE INTO stake (hotkey, coldkey, netuid, alpha) VALUES (?, ?, ?, ?)",
            (hotkey, coldkey, netuid, current + delta),
        )

    # Weights and bonds --------------------------------------------------------

    def set_weights(self, netuid: int, uid: int, pairs: list[tuple[int, int]], block: int) -> None:
        self.clear_weights(netuid, uid)
        self.conn.executemany(
            "INSERT INTO weights (netuid, uid, dest, value, set_at) VALUES (?, ?, ?, ?, ?)",
            [(netuid, uid, d, v, block) for d, v in pairs],
        )
        self.conn.execute(
            "INSERT OR REPLACE INTO weight_rows (netuid, uid, set_at) VALUES (?, ?, ?)",
            (netuid, uid, block),
        )

    def clear_weights(self, netuid: int, uid: int) -> None:
        self.conn.execute("DELETE FROM weights WHERE netuid=? AND uid=?", (netuid, uid))
        self.conn.execute("DELETE FROM weight_rows WHERE netuid=? AND uid=?", (netuid, uid))

    def weights(self, netuid: int) -> dict[int, list[tuple[int, int]]]:
        """uid -> [(dest, u16 value)] sorted by dest."""
        out: dict[int, list[tuple[int, int]]] = {}
        rows = self._all(
            "SELECT uid, dest, value FROM weights WHERE netuid=? ORDER BY uid, dest", (netuid,)
        )
        for r in rows:
            out.setdefault(r["uid"], []).append((r["dest"], r["value"]))
        return out

    def weights_set_at(self, netuid: int) -> dict[int, int]:
        rows = self._all("SELECT uid, set_at FROM weight_rows WHERE netuid=?", (netuid,))
        return {r["uid"]: r["set_at"] for r in rows}

    def bonds(self, netuid: int) -> dict[int, list[tuple[int, float]]]:
        out: dict[int, list[tuple[int, float]]] = {}
        rows = self._all(
            "SELECT uid, dest, value FROM bonds WHERE netuid=? ORDER BY uid, dest", (netuid,)
        )
        for r in rows:
            out.setdefault(r["uid"], []).append((r["dest"], float(r["value"])))
        return out

    def replace_bonds(self, netuid: int, entries: list[tuple[int, int, float]]) -> None:
        self.conn.execute("DELETE FROM bonds WHERE netuid=?", (netuid,))
        self.conn.executemany(
            "INSERT INTO bonds (netuid, uid, dest, value) VALUES (?, ?, ?, ?)",
            [(netuid, i, j, v) for i, j, v in entries],
        )

    def zero_weights_to(self, netuid: int, dest: int) -> None:
        """Every row's weight to ``dest`` becomes 0 (the entry stays, as on the chain)."""
        self.conn.execute("UPDATE weights SET value=0 WHERE netuid=? AND dest=?", (netuid, dest))

    def clear_bond_row(self, netuid: int, uid: int) -> None:
        """Drop the bonds ``uid`` holds (its row); bonds to it are left to the epoch."""
        self.conn.execute("DELETE FROM bonds WHERE netuid=? AND uid=?", (netuid, uid))

    # Commitments --------------------------------------------------------------

    def set_commitment(self, netuid: int, hotkey: str, block: int, fields_: list) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO commitments (netuid, hotkey, block, deposit, fields) "
            "VALUES (?, ?, ?, 0, ?)",
            (netuid, hotkey, block, json.dumps(fields_)),
        )

    def commitments(self, netuid: int) -> list[tuple[str, dict]]:
        rows = self._all("SELECT * FROM commitments WHERE netuid=? ORDER BY hotkey", (netuid,))
        return [(r["hotkey"], _commitment_record(r)) for r in rows]

    def commitment(self, netuid: int, hotkey: str) -> dict | None:
        row = self._one("SELECT * FROM commitments WHERE netuid=? AND hotkey=?", (netuid, hotkey))
        return None if row is None else _commitment_record(row)

    # Extrinsics and events ----------------------------------------------------

    def log_extrinsic(self, record: dict[str, Any]) -> None:
        cols = ("hash", "block", "idx", "signer", "nonce", "module", "function", "params",
                "success", "error", "message")
        values = [record[c] for c in cols]
        values[cols.index("params")] = json.dumps(record["params"])
        self.conn.execute(
            f"INSERT OR REPLACE INTO extrinsics ({', '.join(cols)}) "
            f"VALUES ({', '.join('?' for _ in cols)})",
            values,
        )

    def extrinsic(self, ext_hash: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM extrinsics WHERE hash=?", (ext_hash,))

    def extrinsics_in(self, block: int) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM extrinsics WHERE block=? ORDER BY idx", (block,))

    def add_event(self, block: int, extrinsic_idx: int | None, module: str, event: str,
                  attributes: dict[str, Any]) -> None:
        row = self._one("SELECT COUNT(*) AS n FROM events WHERE block=?", (block,))
        idx = int(row["n"]) if row else 0
        self.conn.execute(
            "INSERT INTO events (block, idx, extrinsic_idx, module, event, attributes) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (block, idx, extrinsic_idx, module, event, json.dumps(attributes)),
        )

    def events(self, block: int) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM events WHERE block=? ORDER BY idx", (block,))


def _neuron(row: sqlite3.Row) -> Neuron:
    values = {c: row[c] for c in _NEURON_COLUMNS}
    values["axon"] = None if row["axon"] is None else json.loads(row["axon"])
    values["validator_permit"] = bool(row["validator_permit"])
    values["active"] = bool(row["active"])
    return Neuron(**values)


def _commitment_record(row: sqlite3.Row) -> dict:
    """The Commitments.CommitmentOf value as the SDK decodes it."""
    return {"deposit": row["deposit"], "block": row["block"],
            "info": {"fields": json.loads(row["fields"])}}
