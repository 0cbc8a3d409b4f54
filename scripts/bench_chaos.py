#!/usr/bin/env python3
"""Chaos on the real local network: seeded ``kill -9`` of random nodes, and what was lost.

Starts ``swarmtrain local``'s network (devnet, validators, miners: separate processes on
127.0.0.1) and, once every miner has submitted, kills random nodes — miners, validators,
the devnet — with SIGKILL at seeded random moments. Each victim stays down for a random
few seconds and is then started again the way docs/running.md says: the same command,
the same ``--state`` directory and port (``LocalNet``'s supervisor does it). With
``--outage-s S`` the devnet is instead killed once and kept down for S seconds (e.g. 300:
a five-minute chain outage); every miner must resume by itself, without a restart.

Per fault it prints what was killed (pid, the window the lead had reached), how long it
was down, and when it was back (the first window it finished afterwards). The last line:

    faults=F windows_lost=W submissions_lost=S double_counted=D hash_agree=true|false ...

The counts, over the measured windows R = [first, first + windows) (``first``: the first
window every honest miner submitted in):

* ``windows_lost`` — windows of R that some validator has no metrics line for at the end
  of the run (it never closed them: no aggregate applied, no scores), plus windows of R
  the lead has no published aggregate for.
* ``submissions_lost`` — (miner, validator, window) triples where the miner's metrics say
  the validator accepted (200, or 409 ``duplicate``: it already held one) its submission
  for the window, but that validator's metrics line for the window does not list the
  miner's uid among its ``submissions`` (an accepted submission that was never evaluated).
  Windows a miner never wrote a line for (killed before it) cannot be counted.
* ``double_counted`` — submissions a validator counted more than once for one window:
  for each (validator, window), every uid's occurrences in ``submissions`` over all of
  that validator's metrics lines for the window, beyond the first (a window closed twice
  after a restart, or one uid twice in one closing).
* ``hash_agree`` — every window of R: every validator's and every honest miner's model
  hash after the window (θ_{w+1}; the last line each wrote for it) equals the lead's,
  and every validator closed it (``localnet_report.window_rows``).

Also: ``restarts`` (node starts after a death: each fault is one, more means a node died
again by itself), ``miner_exits`` (miner restarts beyond the faults on miners: a miner
that quit on its own), ``miners_resumed`` (miners that finished a window after the last
fault ended), ``seconds``.

Usage:
    python scripts/bench_chaos.py --quick                 # 1 validator, 3 miners, 20 windows, 6 faults
    python scripts/bench_chaos.py                         # 2 validators, 4 miners, 30 windows, 12 faults
    python scripts/bench_chaos.py --quick --outage-s 300  # one 5-minute devnet outage instead
    python scripts/bench_chaos.py --quick --storage s3    # aggregates in a local S3 server, which is killed too
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench_common as bc

bc.ensure_repo_on_path()

from node.logs import read_metrics  # noqa: E402
from protocol.data import builtin_corpus  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from swarmtrain.localnet import (  # noqa: E402
    LocalNet,
    LocalNetConfig,
    LocalNetError,
    LocalRunResult,
    default_miners,
)
from swarmtrain.localnet_report import window_rows  # noqa: E402


@dataclass
class Fault:
    """One kill: planned (``at_s`` after the miners' first submissions, ``target``, ``down_s``),
    then what happened (filled in as it runs and after)."""

    at_s: float
    target: str
    down_s: float
    pid: int = -1
    lead_window: int | None = None  # the last window the lead had closed at the kill
    killed_wall: float = 0.0
    restarted_wall: float = 0.0
    outcome: str = ""

    def line(self, index: int) -> str:
        return (f"fault {index}: t={self.at_s:6.1f}s kill -9 {self.target} (pid {self.pid}) after window "
                f"{self.lead_window}; down {self.down_s:.1f}s, restarted; {self.outcome}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 validator, 3 miners, 20 windows, 6 faults (a few minutes)")
    p.add_argument("--seed", type=int, default=1, help="seeds the faults: targets, moments, downtimes")
    p.add_argument("--validators", type=int, default=None, help="default 2 (1 with --quick)")
    p.add_argument("--miners", type=int, default=None, help="default 4 (3 with --quick)")
    p.add_argument("--windows", type=int, default=None, help="measured windows; default 30 (20 with --quick)")
    p.add_argument("--faults", type=int, default=None, help="kills; default 12 (6 with --quick)")
    p.add_argument("--down-s", type=float, nargs=2, default=(0.5, 6.0), metavar=("MIN", "MAX"),
                   help="seconds a killed node stays down before its restart (uniform)")
    p.add_argument("--outage-s", type=float, default=None,
                   help="instead of random kills: one devnet outage of this many seconds")
    p.add_argument("--storage", choices=("validator", "s3"), default="validator",
                   help="s3: the subnet keeps aggregates and checkpoints in a local S3 server, one more target")
    p.add_argument("--block-time", type=float, default=0.5)
    p.add_argument("--blocks-per-window", type=int, default=10)
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "chaos")
    args = p.parse_args(argv)
    defaults = (1, 3, 20, 6) if args.quick else (2, 4, 30, 12)
    for name, value in zip(("validators", "miners", "windows", "faults"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def network_config(args: argparse.Namespace) -> LocalNetConfig:
    subnet = SubnetConfig(preset="tiny", dataset_hash=builtin_corpus().content_hash, seq_len=64, batch_size=8,
                          inner_lr=1e-2, blocks_per_window=args.blocks_per_window, checkpoint_every=2,
                          storage=args.storage)
    window_s = args.blocks_per_window * args.block_time
    timeout = 600 + 6 * args.windows * window_s + (args.outage_s or 0) + args.faults * 30
    return LocalNetConfig(out=args.out, miners=default_miners(args.miners), windows=args.windows,
                          validators=args.validators, subnet=subnet, block_time=args.block_time, tempo=10,
                          timeout_s=timeout, max_restarts=max(5, args.faults + 2))


def plan_faults(args: argparse.Namespace, cfg: LocalNetConfig) -> list[Fault]:
    """Seeded: kill moments spread over 80 % of the measured windows (at least 15 s apart, so
    a restarted node is up before the next kill), random targets and downtimes."""
    rng = random.Random(args.seed)
    span = args.windows * cfg.window_s * 0.8
    if args.outage_s is not None:
        return [Fault(at_s=min(10.0, span / 4), target="devnet", down_s=args.outage_s)]
    gap = max(15.0, span / max(args.faults, 1))
    targets = ["devnet", *(["s3"] if cfg.subnet.storage == "s3" else []), *cfg.validator_names,
               *[m.name for m in cfg.miners]]
    faults, at = [], 5.0
    for _ in range(args.faults):
        at += rng.uniform(0.6, 1.0) * gap
        faults.append(Fault(at_s=round(at, 1), target=rng.choice(targets), down_s=round(rng.uniform(*args.down_s), 1)))
    if "s3" in targets and faults and all(f.target != "s3" for f in faults):
        faults[len(faults) // 2].target = "s3"  # the run is about the S3 server: it is killed at least once
    return faults


def lead_closed(net: LocalNet) -> int | None:
    windows = [int(r["window"]) for r in read_metrics(net.validator_metrics()) if "window" in r]
    return max(windows, default=None)


async def inject(net: LocalNet, faults: list[Fault]) -> None:
    """Wait for the miners' first submissions, then kill, hold down, release each target."""
    while net.progress()[0] is None:
        await asyncio.sleep(0.5)
    start = time.monotonic()
    for fault in faults:
        await asyncio.sleep(max(0.0, start + fault.at_s - time.monotonic()))
        proc = net.processes[fault.target]
        net.held.add(fault.target)  # the supervisor leaves it down while we hold it
        fault.pid, fault.lead_window, fault.killed_wall = proc.pid, lead_closed(net), time.time()
        proc.kill9()
        print(f"t={time.monotonic() - start:6.1f}s kill -9 {fault.target} (pid {fault.pid})", flush=True)
        await asyncio.sleep(fault.down_s)
        net.held.discard(fault.target)
        net.supervise()  # the same command, state and port, as an operator restarts it
        fault.restarted_wall = time.time()


async def run_network(net: LocalNet, faults: list[Fault]) -> LocalRunResult:
    chaos = asyncio.create_task(inject(net, faults))
    try:
        result = await net.run()
        await chaos  # every planned fault happened (they fit in the measured windows)
    finally:
        chaos.cancel()
    return result


# ---- what happened ---------------------------------------------------------------------


def records_of(net: LocalNet, name: str) -> list[dict[str, Any]]:
    return [r for r in read_metrics(net.state_dir(name) / "metrics.jsonl") if "window" in r]


def describe(net: LocalNet, fault: Fault, lead_hashes: dict[int, str]) -> str:
    """The first window the node (for the devnet: the lead validator) finished after its restart."""
    who = "validator" if fault.target in ("devnet", "s3") else fault.target
    after = [r for r in records_of(net, who) if r.get("ts", 0) > fault.restarted_wall]
    if not after:
        return "never finished a window afterwards"
    first = after[0]
    back = first["ts"] - fault.killed_wall
    agrees = first.get("model_hash") == lead_hashes.get(int(first["window"]))
    what = "the lead closed" if fault.target in ("devnet", "s3") else "finished"
    return f"back: {what} window {first['window']} {back:.1f}s after the kill (hash agrees: {str(agrees).lower()})"


def counts(net: LocalNet, result: LocalRunResult) -> dict[str, Any]:
    first, cfg = result.first_window, net.cfg
    measured = range(first, first + cfg.windows)
    validators = {v: records_of(net, v) for v in cfg.validator_names}
    closed = {v: {int(r["window"]) for r in recs} for v, recs in validators.items()}
    published = {w for w in measured if (net.state_dir(cfg.validator_names[0]) / "aggregates" / f"{w:08d}.bin").exists()}
    lost_windows = [w for w in measured if w not in published or any(w not in c for c in closed.values())]
    rows = window_rows(result)
    return {
        "windows_lost": len(lost_windows),
        "submissions_lost": submissions_lost(net, result, validators),
        "double_counted": double_counted(validators),
        "hash_agree": len(rows) == cfg.windows and all(r["hash_agree"] for r in rows),
        "lost_windows": lost_windows,
    }


def submissions_lost(net: LocalNet, result: LocalRunResult, validators: dict[str, list[dict[str, Any]]]) -> int:
    by_uid = {result.uids[v]: v for v in validators}
    held: dict[tuple[str, int], set[int]] = {(v, int(r["window"])): set() for v, recs in validators.items() for r in recs}
    for v, recs in validators.items():
        for r in recs:
            held[(v, int(r["window"]))] |= {int(u) for u in r.get("submissions", [])}
    lost = 0
    for spec in net.cfg.miners:
        uid = result.uids[spec.name]
        for r in records_of(net, spec.name):
            for vuid in r.get("accepted", []):
                lost += uid not in held.get((by_uid.get(int(vuid), "?"), int(r["window"])), set())
    return lost


def double_counted(validators: dict[str, list[dict[str, Any]]]) -> int:
    extra = 0
    for recs in validators.values():
        per_window: dict[int, Counter[int]] = {}
        for r in recs:
            per_window.setdefault(int(r["window"]), Counter()).update(int(u) for u in r.get("submissions", []))
        extra += sum(n - 1 for c in per_window.values() for n in c.values() if n > 1)
    return extra


def resumed(net: LocalNet, faults: list[Fault]) -> tuple[int, int]:
    """(miners that finished a trained window after the last fault ended, miners)."""
    end = max((f.restarted_wall for f in faults), default=0.0)
    names = [m.name for m in net.cfg.miners]
    return sum(any(r.get("ts", 0) > end and r.get("trained") for r in records_of(net, n)) for n in names), len(names)


def report(net: LocalNet, result: LocalRunResult, faults: list[Fault], seconds: float) -> dict[str, Any]:
    lead_hashes = {int(r["window"]): r.get("model_hash") for r in records_of(net, net.cfg.validator_names[0])}
    for i, fault in enumerate(faults, 1):
        fault.outcome = describe(net, fault, lead_hashes)  # type: ignore[arg-type]
        print(fault.line(i))
    found = counts(net, result)
    if found["lost_windows"]:
        print(f"windows lost: {found['lost_windows']}")
    killed_miners = sum(f.target.startswith("miner") for f in faults)
    miner_restarts = sum(n for name, n in net.restarts.items() if name.startswith("miner"))
    back, total = resumed(net, faults)
    found["hash_agree"] = str(found["hash_agree"]).lower()
    return {"faults": len(faults), **{k: v for k, v in found.items() if k != "lost_windows"},
            "restarts": sum(net.restarts.values()), "miner_exits": miner_restarts - killed_miners,
            "miners_resumed": f"{back}/{total}", "windows": net.cfg.windows, "seconds": round(seconds)}


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds like Ctrl-C: every node is stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = network_config(args)
    faults = plan_faults(args, cfg)
    print(f"chaos: {args.validators} validator(s), {args.miners} miners, {args.windows} windows of "
          f"{cfg.window_s:g}s, seed {args.seed}, {len(faults)} fault(s) planned: "
          + ", ".join(f"{f.target}@{f.at_s:g}s" for f in faults), flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    with LocalNet(cfg) as net:
        try:
            result = asyncio.run(run_network(net, faults))
        except LocalNetError as err:  # e.g. a window never closed: count what there is
            print(f"the run did not finish: {err}")
            result = net.partial_result(time.monotonic() - started)
    summary = report(net, result, faults, time.monotonic() - started)
    print(bc.summary_line(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
