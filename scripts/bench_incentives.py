#!/usr/bin/env python3
"""Does the subnet pay honest work, and nothing else? The attack suite, through the nodes' code.

Every strategy of docs/criteria.md's attack suite (``scripts/_attacks.py``) runs on its own
uid beside ``--honest`` honest miners, for ``--windows`` windows and ``--seeds`` seeds
(each seed: another subnet seed, so another θ_0, data assignment and validator secrets).
Each window goes the way it goes on the network:

  miner: ``InnerTrainer`` + ``codec.ErrorFeedback`` + ``codec.encode`` + ``build_submission``
  → each validator: ``Intake.admit`` (every check after the signature)
  → ``Evaluator.evaluate_window`` (its own secret) → ``ScoreBook.update``
  → the lead (most stake): ``build_aggregate`` → every node: ``ModelState.apply_aggregate``
  → every ``--tempo`` windows: each validator's ``ScoreBook.weights()`` (a weight copier sets
    the previous epoch's consensus) → ``protocol.emission.yuma_epoch`` with the stakes.

Per strategy it prints the mean window score, the final pay (ema × evidence), the share of
miner incentive over the last third of the epochs (the steady state) and over the whole run,
and the ratio to the median honest miner; then the first windows (honest miners are paid
while the own-data test cannot yet tell), and the validators' dividends per stake. A second
run with the honest miners only gives the loss the attackers cost.

Usage:
    python scripts/bench_incentives.py --quick      # 2 seeds x 20 windows, a few minutes
    python scripts/bench_incentives.py              # 3 seeds x 30 windows

Last line: ``honest_share=… max_attack_ratio=… worst=… over_trainer_ratio=…
max_rescaled_ratio=… loss_with_attackers_vs_honest_only=…``. ``honest_share`` is the share
of miner incentive held by uids that did their own honest work (honest, over-trainer and
the rescaled ones, whose pay must not change with the scale); ``max_attack_ratio`` the best
cheat's share over the median honest miner's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import _bench_common as bc

bc.ensure_repo_on_path()

import torch  # noqa: E402
from _attacks import Strategy, World, build_suite  # noqa: E402

from miner.submit import build_submission  # noqa: E402
from node.model_state import ModelState  # noqa: E402
from node.signed_http import RequestRefused  # noqa: E402
from protocol import codec, criteria, emission, windows  # noqa: E402
from protocol.aggregate_payload import decode_aggregate  # noqa: E402
from protocol.data import TokenDataset, builtin_corpus  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from validator.aggregation import build_aggregate  # noqa: E402
from validator.evaluate import Evaluator, WindowEvaluation, validation_indices, validation_loss  # noqa: E402
from validator.intake import Intake, IntakeView  # noqa: E402
from validator.scores import ScoreBook  # noqa: E402
from validator.settings import ValidatorSettings  # noqa: E402
from validator.store import SubmissionStore  # noqa: E402

GROUPS_OWN_WORK = ("honest", "legit", "rescaled")
STAKES = (500.0, 300.0, 150.0, 100.0, 80.0, 60.0)  # honest validators' stakes, the lead first


@dataclass(frozen=True)
class Setup:
    """One benchmark's settings."""

    subnet: SubnetConfig
    windows: int
    seeds: int
    honest: int
    stakes: tuple[float, ...]  # honest validators, the lead first
    copier_stake: float  # a weight-copying validator (0: none)
    tempo: int  # windows per epoch


@dataclass
class BenchValidator:
    """One validator's own state: intake, store, evaluator, scores and secret."""

    uid: int
    stake: float
    copier: bool
    intake: Intake | None = None
    store: SubmissionStore | None = None
    evaluator: Evaluator | None = None
    book: ScoreBook | None = None
    secret: bytes = b""
    results: list[WindowEvaluation] = field(default_factory=list)


@dataclass
class SeedRun:
    """What one seed's run recorded (uid-indexed lists)."""

    suite: list[Strategy]
    incentive: list[list[float]] = field(default_factory=list)  # per epoch, per uid
    dividends: list[list[float]] = field(default_factory=list)  # per epoch, per uid
    scores: dict[int, list[float]] = field(default_factory=dict)  # window scores at every validator
    reasons: dict[int, dict[str, int]] = field(default_factory=dict)  # verdict reasons at every validator
    final_pay: dict[int, float] = field(default_factory=dict)
    val_loss: list[float] = field(default_factory=list)
    early: list[dict] = field(default_factory=list)  # the first windows, for the report
    refusals: dict[str, int] = field(default_factory=dict)
    validators: list[BenchValidator] = field(default_factory=list)


# ---------------------------------------------------------------------------- set-up


def make_validators(setup: Setup, world: World, n_miners: int, root: Path, seed: int) -> list[BenchValidator]:
    stakes = [(s, False) for s in setup.stakes] + ([(setup.copier_stake, True)] if setup.copier_stake > 0 else [])
    out = []
    for i, (stake, copier) in enumerate(stakes):
        v = BenchValidator(uid=n_miners + i, stake=stake, copier=copier, secret=f"secret-{seed}-{i}".encode())
        if not copier:
            settings = ValidatorSettings(netuid=world.cfg.netuid, state_dir=root / f"v{i}")
            v.store = SubmissionStore()
            population = world.dataset.num_samples(world.cfg.seq_len)
            v.intake = Intake(IntakeView(), v.store, world.cfg, settings, self_hotkey=bc.fake_hotkey(v.uid),
                              population=population, spec=world.state.spec)
            v.evaluator = Evaluator(world.cfg, world.dataset)
            v.book = ScoreBook(root / f"v{i}" / "scores.json")
        out.append(v)
    return out


# ---------------------------------------------------------------------------- one window


def submissions(world: World, suite: list[Strategy], w: int) -> list[tuple[Strategy, bytes]]:
    """Each strategy's envelope for window ``w`` (in uid order: honest miners arrive first)."""
    world.sent.clear()
    cfg, population = world.cfg, world.dataset.num_samples(world.cfg.seq_len)
    base_hash, out = world.state.hash(), []
    for s in suite:
        update = s.plan(world, w)
        if update is None:
            continue
        world.sent[s.uid] = update
        indices = windows.assigned_samples(cfg.seed_bytes, w, s.uid, cfg.samples_per_window, population)
        body = build_submission(cfg, window=w, uid=s.uid, hotkey=bc.fake_hotkey(s.uid),
                                base_model_hash=base_hash, indices=indices,
                                payload=codec.encode(update, world.codec_cfg))
        out.append((s, body))
    return out


def intake_all(v: BenchValidator, world: World, w: int, bodies: list[tuple[Strategy, bytes]],
               hotkeys: dict[int, str], refusals: dict[str, int]) -> None:
    assert v.intake is not None and v.store is not None
    view = v.intake.view
    view.open_window, view.ready, view.model_hash, view.hotkeys = w, True, world.state.hash(), hotkeys
    for s, body in bodies:
        try:
            v.store.add(v.intake.admit(body, bc.fake_hotkey(s.uid)))
        except RequestRefused as refused:
            refusals[f"{s.name}:{refused.code}"] = refusals.get(f"{s.name}:{refused.code}", 0) + 1


def evaluate(v: BenchValidator, world: World, w: int, hotkeys: dict[int, str]) -> WindowEvaluation:
    assert v.store is not None and v.evaluator is not None and v.book is not None
    subs = v.store.for_window(w)
    result = v.evaluator.evaluate_window(world.state, subs, last_evaluated=v.book.last_evaluated(),
                                         secret=v.secret, recent_z=v.book.recent_z(),
                                         previous_norm=v.book.previous_norm(w), registered=max(hotkeys) + 1)
    v.book.update(w, result.verdicts, [s.uid for s in subs], hotkeys, median_norm=result.median_norm)
    v.store.drop_through(w)
    v.results.append(result)
    return result


def run_window(world: World, suite: list[Strategy], vals: list[BenchValidator], w: int, run: SeedRun) -> None:
    hotkeys = {s.uid: bc.fake_hotkey(s.uid) for s in suite} | {v.uid: bc.fake_hotkey(v.uid) for v in vals}
    bodies = submissions(world, suite, w)
    results = []
    for v in vals:
        if not v.copier:
            intake_all(v, world, w, bodies, hotkeys, run.refusals)
            results.append(evaluate(v, world, w, hotkeys))
    for result in results:
        for uid, verdict in result.verdicts.items():
            run.scores.setdefault(uid, []).append(verdict.score)
            counts = run.reasons.setdefault(uid, {})
            counts[verdict.reason] = counts.get(verdict.reason, 0) + 1
    header, payload = build_aggregate(world.state, results[0].verdicts, results[0].dense, hotkeys, world.cfg)
    world.state.apply_aggregate(header, payload)
    world.last_aggregate = decode_aggregate(payload, world.state.spec) if header.contributors else None
    for v in vals:
        if v.evaluator is not None:
            v.evaluator.note_aggregate(payload if header.contributors else b"", world.state.spec)
    run.early.append(early_record(w, suite, results[0], vals[0]))


def early_record(w: int, suite: list[Strategy], result: WindowEvaluation, lead: BenchValidator) -> dict:
    """The lead's view of window ``w``: was the own-data test informative, who was paid."""
    assert lead.book is not None
    weights = lead.book.weights()
    names = {s.uid: s.name for s in suite}
    honest = [s.uid for s in suite if s.group == "honest"]
    return {
        "window": w,
        "informative": bool(result.bar and result.bar.informative),
        "z_top": round(result.bar.z_top, 2) if result.bar else 0.0,
        "honest_scored": sum(result.scores.get(u, 0.0) for u in honest),
        "honest_weight": sum(weights.get(u, 0.0) for u in honest),
        "reasons": {names.get(u, str(u)): v.reason for u, v in result.verdicts.items()},
    }


# ---------------------------------------------------------------------------- epochs


def weights_matrix(vals: list[BenchValidator], n: int, prev_consensus: torch.Tensor | None) -> torch.Tensor:
    w = torch.zeros(n, n, dtype=torch.float64)
    for v in vals:
        if v.copier:
            if prev_consensus is not None:
                w[v.uid] = prev_consensus
        else:
            assert v.book is not None
            for uid, weight in v.book.weights().items():
                w[v.uid, uid] = weight
    return w


def run_epoch(vals: list[BenchValidator], n: int, block: int, bonds: torch.Tensor,
              prev: torch.Tensor | None) -> emission.EpochResult:
    stake = torch.zeros(n, dtype=torch.float64)
    for v in vals:
        stake[v.uid] = v.stake
    inputs = emission.EpochInputs(
        weights=weights_matrix(vals, n, prev), stake=stake,
        last_update=torch.full((n,), block, dtype=torch.int64), registered_at=torch.zeros(n, dtype=torch.int64),
        weights_set_at=torch.full((n,), block, dtype=torch.int64), bonds=bonds,
        current_block=block, emission_budget=1.0,
    )
    return emission.yuma_epoch(inputs)


# ---------------------------------------------------------------------------- one seed


def run_seed(setup: Setup, seed: int, *, attacks: bool, dataset: TokenDataset, log_every: int = 5) -> SeedRun:
    cfg = setup.subnet.model_copy(update={"seed": f"incentives-{seed}"})
    world = World(cfg, dataset, ModelState.initial(cfg), rng_seed=seed, windows=setup.windows)
    suite = build_suite(world, setup.honest, attacks=attacks)
    run = SeedRun(suite)
    with tempfile.TemporaryDirectory() as tmp:
        vals = make_validators(setup, world, len(suite), Path(tmp), seed)
        run.validators = vals
        n = len(suite) + len(vals)
        val_idx = validation_indices(dataset, cfg, 128)
        bonds, consensus = torch.zeros(n, n, dtype=torch.float64), None
        for w in range(setup.windows):
            run_window(world, suite, vals, w, run)
            run.val_loss.append(validation_loss(world.state.clone_model(), dataset, cfg, val_idx))
            if (w + 1) % setup.tempo == 0:
                result = run_epoch(vals, n, (w + 1) * 100, bonds, consensus)
                bonds, consensus = result.bonds, result.consensus
                run.incentive.append(result.incentive.tolist())
                run.dividends.append(result.dividends.tolist())
            if (w + 1) % log_every == 0:
                print(f"  seed {seed} {'attacks' if attacks else 'honest only'}: window {w + 1}/{setup.windows}"
                      f" val loss {run.val_loss[-1]:.4f}", flush=True)
        run.final_pay = final_pay(vals)
    return run


def final_pay(vals: list[BenchValidator]) -> dict[int, float]:
    """Mean over the honest validators of each uid's final weight."""
    books = [v.book for v in vals if v.book is not None]
    pay: dict[int, float] = {}
    for book in books:
        for uid, weight in book.weights().items():
            pay[uid] = pay.get(uid, 0.0) + weight / len(books)
    return pay


# ---------------------------------------------------------------------------- report


@dataclass
class Row:
    name: str
    group: str
    mean_score: float
    final_pay: float
    share: float  # miner incentive, last third of the epochs
    whole_run: float  # miner incentive, every epoch
    zeros: str  # why it scored 0 (verdict reason: count, over seeds and validators)
    ratio: float = 0.0


def strategy_rows(runs: list[SeedRun]) -> list[Row]:
    rows = []
    for i, s in enumerate(runs[0].suite):
        per_seed = [(r.suite[i], r) for r in runs]
        tail = [statistics.mean(e[s.uid] for e in r.incentive[-max(1, len(r.incentive) // 3):]) for _, r in per_seed]
        rows.append(Row(
            name=s.name, group=s.group,
            mean_score=statistics.mean(x for _, r in per_seed for x in r.scores.get(s.uid, [0.0])),
            final_pay=statistics.mean(r.final_pay.get(s.uid, 0.0) for _, r in per_seed),
            share=statistics.mean(tail),
            whole_run=statistics.mean(statistics.mean(e[s.uid] for e in r.incentive) for _, r in per_seed),
            zeros=zero_reasons(r.reasons.get(s.uid, {}) for _, r in per_seed),
        ))
    median_honest = statistics.median(r.share for r in rows if r.group == "honest")
    for row in rows:
        row.ratio = row.share / median_honest if median_honest > 0 else 0.0
    return rows


def zero_reasons(per_seed: Iterable[dict[str, int]]) -> str:
    total: dict[str, int] = {}
    for counts in per_seed:
        for reason, n in counts.items():
            if reason != "ok":
                total[reason] = total.get(reason, 0) + n
    return " ".join(f"{k}:{v}" for k, v in sorted(total.items(), key=lambda kv: -kv[1])) or "-"


def print_rows(rows: list[Row]) -> None:
    print("| strategy | group | mean window score | final pay | incentive share (last third) "
          "| whole run | ratio to median honest | scored 0 because |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.group} | {r.mean_score:.3f} | {r.final_pay:.4f} | {r.share:.4f} "
              f"| {r.whole_run:.4f} | {r.ratio:.3f} | {r.zeros} |")


def print_early(run: SeedRun, count: int = 8) -> None:
    print(f"\nfirst {count} windows of seed 0 at the lead (honest: {sum(s.group == 'honest' for s in run.suite)} miners)")
    print("| window | own-data test counts | z_top | honest window scores (sum over evaluated) | honest weight share "
          "| data-ignoring | own-data-at-end |")
    print("|---|---|---|---|---|---|---|")
    for e in run.early[:count]:
        print(f"| {e['window']} | {'yes' if e['informative'] else 'no'} | {e['z_top']} | {e['honest_scored']:.2f} "
              f"| {e['honest_weight']:.3f} | {e['reasons'].get('data-ignoring', '-')} "
              f"| {e['reasons'].get('own-data-at-end', '-')} |")


def print_first_informative(runs: list[SeedRun]) -> None:
    firsts = [next((e["window"] for e in r.early if e["informative"]), None) for r in runs]
    print(f"the own-data test first counted (at the lead) in window: {firsts} (per seed)")


def print_validators(runs: list[SeedRun]) -> None:
    print("\nvalidators: share of dividends / share of stake (1 = paid as staked), last third of the epochs")
    for i, v in enumerate(runs[0].validators):
        per = []
        for r in runs:
            total_stake = sum(x.stake for x in r.validators)
            tail = r.dividends[-max(1, len(r.dividends) // 3):]
            per.append(statistics.mean(e[r.validators[i].uid] for e in tail) / (r.validators[i].stake / total_stake))
        kind = "weight copier" if v.copier else ("lead" if i == 0 else "validator")
        print(f"  uid {v.uid} ({kind}, stake {v.stake:g}): {statistics.mean(per):.3f}")


def summary(rows: list[Row], runs: list[SeedRun], baseline: list[SeedRun]) -> dict[str, object]:
    total = sum(r.share for r in rows)
    own = sum(r.share for r in rows if r.group in GROUPS_OWN_WORK)
    cheats = [r for r in rows if r.group == "cheat"]
    worst = max(cheats, key=lambda r: r.ratio)
    over = next(r for r in rows if r.group == "legit")
    rescaled = [r for r in rows if r.group == "rescaled"]
    loss = statistics.mean(r.val_loss[-1] for r in runs) / statistics.mean(r.val_loss[-1] for r in baseline)
    return {
        "honest_share": own / total if total else 0.0,
        "max_attack_ratio": worst.ratio, "worst": worst.name,
        "over_trainer_ratio": over.ratio,
        "max_rescaled_ratio": max(r.ratio for r in rescaled),
        "loss_with_attackers_vs_honest_only": loss,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 seeds x 20 windows (a few minutes)")
    p.add_argument("--windows", type=int, help="windows per run (default 30; --quick 20)")
    p.add_argument("--seeds", type=int, help="seeds (default 3; --quick 2)")
    p.add_argument("--honest", type=int, default=4, help="honest miners (>= 4)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--max-evaluations", type=int, default=16,
                   help="miners each validator evaluates per window (fewer than submit: not all every window)")
    p.add_argument("--validators", type=int, help="evaluating validators, stakes 50/30/15/..%% (default 3; --quick 2)"
                   "; a weight copier with 5 %% of the stake comes on top")
    p.add_argument("--tempo", type=int, default=1, help="windows per epoch (weights set and Yuma run)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(
        subnet=SubnetConfig(preset=args.preset, max_evaluations=args.max_evaluations),
        windows=args.windows or (20 if args.quick else 30), seeds=args.seeds or (2 if args.quick else 3),
        honest=args.honest, stakes=STAKES[: args.validators or (2 if args.quick else 3)], copier_stake=50.0,
        tempo=args.tempo,
    )
    dataset = builtin_corpus()
    started = time.perf_counter()
    print(f"criteria v{criteria.CRITERIA_VERSION} {criteria.criteria_hash()[:16]}  preset={args.preset} "
          f"windows={setup.windows} seeds={setup.seeds} honest={setup.honest} max_evaluations={args.max_evaluations}")
    runs = [run_seed(setup, seed, attacks=True, dataset=dataset) for seed in range(setup.seeds)]
    baseline = [run_seed(setup, seed, attacks=False, dataset=dataset) for seed in range(setup.seeds)]
    rows = strategy_rows(runs)
    print()
    print_rows(rows)
    print_early(runs[0])
    print_first_informative(runs)
    print_validators(runs)
    if runs[0].refusals:
        print(f"\nrefused at intake (strategy:code -> count, seed 0): {runs[0].refusals}")
    print(f"\nseconds={time.perf_counter() - started:.0f}")
    print(bc.summary_line(summary(rows, runs, baseline)))


if __name__ == "__main__":
    main()
