#!/usr/bin/env python3
"""What does it cost a validator to check one miner, next to one miner inner step?

Measured side by side on this machine, same preset, with the validator's own code:

* **verify** — what intake does to a submission body: ``unpack_envelope`` (schema,
  length, sha256), the data-digest recomputation of the miner's assignment, and
  ``codec.decode`` of the payload (every index and value checked).
* **evaluate** — ``validator.evaluate.Evaluator.evaluate_window``: decompress, copy
  detection, and the own/random losses before and after applying the update. Timed for
  1 and for K submissions; the slope is the cost per miner, the rest is per window.
* **per window** — ``build_aggregate`` of the top-G contributors (the published
  aggregate, including the preview apply that fixes ``next_model_hash``) and the
  validation loss the validator logs.
* **inner step** — one ``InnerTrainer.step`` (AdamW, batch B x T) of a miner.

miners_per_window: the validator closes a window after it ends, while miners wait for
the aggregate, so its work is time the miners do not train. With ``--train-share`` of
the chain window (blocks_per_window x 12 s) for training, the validator has the rest:
``floor((budget − per_window) / (verify + evaluate_per_miner))``.

Usage:
    python scripts/bench_validator.py                  # subnet default preset (tiny)
    python scripts/bench_validator.py --preset small
    python scripts/bench_validator.py --miners 256 --preset small   # one at a time vs batched
    python scripts/bench_validator.py --miners 256 --preset small --quick   # 16 evaluated, 1 repeat

Last line: ``eval_cost_vs_inner_step=<x> miners_per_window=<x> ...``; with ``--miners``:
``miners_per_window_one_at_a_time=<x> miners_per_window_batched=<x> throughput_ratio=<x>
same_verdicts=<0|1> ...`` (see ``_eval_throughput.py`` for what is timed and how).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import _bench_common as bc

bc.ensure_repo_on_path()

import _eval_throughput as et  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from miner.submit import build_submission  # noqa: E402
from miner.trainer import InnerTrainer  # noqa: E402
from node.model_state import ModelState  # noqa: E402
from protocol import codec, criteria  # noqa: E402
from protocol.data import TokenDataset, builtin_corpus  # noqa: E402
from protocol.messages import Submission, data_digest, unpack_envelope  # noqa: E402
from protocol.model import preset  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from protocol.windows import assigned_samples  # noqa: E402
from validator.aggregation import build_aggregate  # noqa: E402
from validator.evaluate import Evaluator, validation_indices, validation_loss  # noqa: E402
from validator.settings import ValidatorSettings  # noqa: E402
from validator.store import StoredSubmission  # noqa: E402

CHAIN_BLOCK_S = 12.0  # Bittensor's block time


QUICK_EVALUATE = 16  # --quick: miners each evaluator evaluates (the slope needs two points)

@dataclass(frozen=True)
class Costs:
    """Median seconds of each measured piece."""

    inner_step: float
    verify: float  # per submission
    evaluate_per_miner: float
    evaluate_fixed: float  # per window: model copies, selection
    aggregate: float  # per window: top-G aggregate + preview apply
    val_loss: float  # per window: the validator's logged validation loss

    @property
    def per_miner(self) -> float:
        return self.verify + self.evaluate_per_miner

    @property
    def per_window(self) -> float:
        return self.evaluate_fixed + self.aggregate + self.val_loss


def passing(uids: Sequence[int]) -> dict[int, criteria.Verdict]:
    """Verdicts that make ``uids`` the aggregate's contributors (random updates would score 0)."""
    return {uid: criteria.Verdict(uid, 1.0, "ok", None, 0.0, 0.0) for uid in uids}


def random_delta(spec: dict[str, tuple[int, ...]], gen: torch.Generator, scale: float) -> dict[str, Tensor]:
    """A pseudo-gradient of the right shapes; evaluation cost does not depend on its content."""
    return {name: torch.randn(shape, generator=gen) * scale for name, shape in spec.items()}


def make_bodies(cfg: SubnetConfig, state: ModelState, population: int, count: int) -> list[bytes]:
    """``count`` submission bodies for window ``state.window``, as miners send them."""
    ccfg = cfg.codec_config()
    gen = torch.Generator().manual_seed(1)
    bodies = []
    for uid in range(count):
        payload = codec.encode(codec.compress(random_delta(state.spec, gen, 1e-3), ccfg), ccfg)
        indices = assigned_samples(cfg.seed_bytes, state.window, uid, cfg.samples_per_window, population)
        bodies.append(build_submission(cfg, window=state.window, uid=uid, hotkey=bc.fake_hotkey(uid),
                                       base_model_hash=state.hash(), indices=indices, payload=payload))
    return bodies


def verify(body: bytes, cfg: SubnetConfig, spec: dict, population: int) -> StoredSubmission:
    """Intake's work on one body (without the HTTP and signature layers)."""
    header, payload = unpack_envelope(body, Submission)
    indices = assigned_samples(cfg.seed_bytes, header.window, header.uid, cfg.samples_per_window, population)
    if header.data_digest != data_digest(indices):
        raise ValueError("data digest mismatch")
    update = codec.decode(payload, spec, cfg.codec_config())
    return StoredSubmission.summarize(header, payload, update, spec)


def measure(cfg: SubnetConfig, ds: TokenDataset, k: int, repeats: int, device: torch.device) -> Costs:
    """Time every piece; K submissions for the evaluation slope."""
    state = ModelState.initial(cfg)
    population = ds.num_samples(cfg.seq_len)
    bodies = make_bodies(cfg, state, population, k)
    subs = [verify(b, cfg, state.spec, population) for b in bodies]
    t_verify = bc.median_seconds(lambda: verify(bodies[0], cfg, state.spec, population), repeats=repeats)
    judge = Evaluator(cfg, ds, device=str(device))

    def evaluate(n: int) -> Any:
        return judge.evaluate_window(state, subs[:n], last_evaluated={}, secret=b"bench")

    t1 = bc.median_seconds(lambda: evaluate(1), repeats=repeats, device=device)
    tk = bc.median_seconds(lambda: evaluate(k), repeats=repeats, device=device)
    per_miner = (tk - t1) / (k - 1)
    evaluate(k)
    g = min(cfg.top_g, k)
    verdicts = passing([s.uid for s in subs[:g]])
    hotkeys = {s.uid: s.hotkey for s in subs}
    dense = {s.uid: codec.decompress(judge.decode(s, state.spec), state.spec) for s in subs[:g]}
    t_agg = bc.median_seconds(lambda: build_aggregate(state, verdicts, dense, hotkeys, cfg),
                              repeats=repeats)
    return Costs(inner_step=inner_step_seconds(cfg, ds, repeats, device), verify=t_verify,
                 evaluate_per_miner=per_miner, evaluate_fixed=max(t1 - per_miner, 0.0),
                 aggregate=t_agg, val_loss=val_loss_seconds(cfg, ds, state, repeats, device))


def inner_step_seconds(cfg: SubnetConfig, ds: TokenDataset, repeats: int, device: torch.device) -> float:
    trainer = InnerTrainer(preset(cfg.preset), lr=cfg.inner_lr, device=device)
    batch = ds.batch(list(range(cfg.batch_size)), cfg.seq_len)
    return bc.median_seconds(lambda: trainer.step(batch), repeats=repeats, warmup=2, device=device)


def val_loss_seconds(cfg: SubnetConfig, ds: TokenDataset, state: ModelState, repeats: int,
                     device: torch.device) -> float:
    count = cfg.eval_samples * ValidatorSettings(netuid=cfg.netuid, state_dir=Path(".")).val_batches
    idx = validation_indices(ds, cfg, count)
    model = state.clone_model()
    return bc.median_seconds(lambda: validation_loss(model, ds, cfg, idx, str(device)),
                             repeats=repeats, device=device)


def capacity(c: Costs, window_s: float, train_share: float) -> int:
    """Miners one validator can verify and evaluate in the window's non-training share."""
    budget = window_s * (1.0 - train_share) - c.per_window
    return max(0, math.floor(budget / c.per_miner)) if c.per_miner > 0 else 0


def print_report(cfg: SubnetConfig, c: Costs, window_s: float, shares: Sequence[float]) -> None:
    rows = [["one miner inner step (AdamW)", c.inner_step * 1e3, 1.0],
            ["verify one submission", c.verify * 1e3, c.verify / c.inner_step],
            ["evaluate one submission", c.evaluate_per_miner * 1e3, c.evaluate_per_miner / c.inner_step],
            ["verify + evaluate (per miner)", c.per_miner * 1e3, c.per_miner / c.inner_step],
            ["per window: evaluation set-up", c.evaluate_fixed * 1e3, c.evaluate_fixed / c.inner_step],
            [f"per window: aggregate of top-{cfg.top_g}", c.aggregate * 1e3, c.aggregate / c.inner_step],
            ["per window: validation loss", c.val_loss * 1e3, c.val_loss / c.inner_step]]
    print(bc.markdown_table(["cost", "ms", "x inner step"], rows))
    print(f"\nchain window = {cfg.blocks_per_window} blocks x {CHAIN_BLOCK_S:.0f} s = {window_s:.0f} s")
    print(bc.markdown_table(["training share of the window", "validator budget s", "miners per window"],
                            [[s, round(window_s * (1 - s), 1), capacity(c, window_s, s)] for s in shares]))


def window_subs(cfg: SubnetConfig, ds: TokenDataset, state: ModelState, n: int, honest: int,
                distinct: int = 32) -> list[StoredSubmission]:
    """N verified submissions of one window, arrival order = uid: ``honest`` trained updates
    (uids 0..), a copy of uid 0's, and random updates for the rest (``distinct`` different
    ones, repeated: evaluating costs the same whatever the update holds)."""
    population, ccfg, base_hash = ds.num_samples(cfg.seq_len), cfg.codec_config(), state.hash()
    gen = torch.Generator().manual_seed(1)
    randoms = [codec.encode(codec.compress(random_delta(state.spec, gen, 1e-3), ccfg), ccfg)
               for _ in range(min(distinct, max(n - honest - 1, 0)))]
    payloads = {uid: et.honest_payload(cfg, ds, state, uid) for uid in range(min(honest, n))}
    if honest < n:
        payloads[honest] = payloads[0]
    subs = []
    for uid in range(n):
        payload = payloads.get(uid) or randoms[uid % len(randoms)]
        indices = assigned_samples(cfg.seed_bytes, state.window, uid, cfg.samples_per_window, population)
        body = build_submission(cfg, window=state.window, uid=uid, hotkey=bc.fake_hotkey(uid),
                                base_model_hash=base_hash, indices=indices, payload=payload)
        s = verify(body, cfg, state.spec, population)
        subs.append(replace(s, arrival=uid))
    return subs


def earlier_aggregate(cfg: SubnetConfig, state: ModelState, hotkeys: dict[int, str]) -> bytes:
    """The last published aggregate as the window's evaluators know it: top-G random updates
    (an earlier window's, which no submission of this one resends)."""
    gen = torch.Generator().manual_seed(2)
    uids = sorted(hotkeys)[: cfg.top_g]
    dense = {uid: random_delta(state.spec, gen, 1e-3) for uid in uids}
    verdicts = passing(uids)
    return build_aggregate(state, verdicts, dense, hotkeys, cfg)[1]


def throughput(args: argparse.Namespace, cfg: SubnetConfig, ds: TokenDataset, device: torch.device) -> int:
    """``--miners N``: one at a time against batched, same window, same chosen miners."""
    state = ModelState.initial(cfg)
    subs = window_subs(cfg, ds, state, args.miners, args.honest)
    population = ds.num_samples(cfg.seq_len)
    body = make_bodies(cfg, state, population, 1)[0]
    verify_s = bc.median_seconds(lambda: verify(body, cfg, state.spec, population), repeats=args.repeats)
    g = min(cfg.top_g, len(subs))
    verdicts = passing([s.uid for s in subs[:g]])
    dense = {s.uid: codec.decompress(codec.decode(s.payload, state.spec, cfg.codec_config()), state.spec)
             for s in subs[:g]}
    agg_s = bc.median_seconds(lambda: build_aggregate(state, verdicts, dense, {s.uid: s.hotkey for s in subs}, cfg),
                              repeats=args.repeats)
    e, last = min(args.evaluate or cfg.max_evaluations, len(subs)), et.population(subs, args.honest)
    memory = int(args.eval_memory_gib * (1 << 30))
    win = et.Window(state, subs, last, previous_norm=criteria.median_norm(s.norm for s in subs) or 1.0,
                    aggregate=earlier_aggregate(cfg, state, hotkeys={s.uid: s.hotkey for s in subs}))
    one, one_result = et.time_method("one at a time", et.one_at_a_time_factory(cfg, ds, device), win, e,
                                     verify_s, agg_s, prepare=False, repeats=args.repeats)
    many, many_result = et.time_method("batched", et.batched_factory(cfg, ds, device, args.models_per_pass, memory),
                                       win, e, verify_s, agg_s, prepare=True, repeats=args.repeats)
    window_s = cfg.blocks_per_window * CHAIN_BLOCK_S
    close_s, arrival_s = window_s * (1 - args.train_share), window_s * args.train_share
    caps = {m.name: m.capacity(close_s, arrival_s) for m in (one, many)}
    print(f"window: {len(subs)} submissions ({args.honest} honest, 1 copy, the rest random), {e} evaluated by each "
          f"(best of {args.repeats}); "
          f"chain window {window_s:.0f} s, close budget {close_s:.0f} s, training {arrival_s:.0f} s")
    print(bc.markdown_table(
        ["evaluator", "arrival work ms/miner", "close fixed ms", "close ms/miner", "dense Δ kept MiB",
         "miners per window"],
        [[m.name, m.arrival_per_miner * 1e3, m.close_fixed * 1e3, m.close_per_miner * 1e3,
          m.dense_kept_bytes / 2**20, caps[m.name]] for m in (one, many)]))
    same = et.compare(one_result, many_result)
    fields = {"miners_per_window_one_at_a_time": caps[one.name], "miners_per_window_batched": caps[many.name],
              "throughput_ratio": caps[many.name] / max(caps[one.name], 1),
              "close_ms_per_miner_one": one.close_per_miner * 1e3, "close_ms_per_miner_batched": many.close_per_miner * 1e3,
              "close_speedup_per_miner": one.close_per_miner / many.close_per_miner,
              **same, "miners": len(subs), "evaluated": e, "preset": cfg.preset, "device": str(device)}
    record = {"methods": [one.__dict__, many.__dict__], "machine": bc.machine_info(device), **fields}
    print(f"wrote {bc.write_json(args.out, f'validator-throughput-{cfg.preset}.json', record)}")
    print(bc.summary_line(fields))
    return 0 if same["same_verdicts"] else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = SubnetConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default=d.preset)
    p.add_argument("--submissions", type=int, default=8, help="K for the evaluation slope")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    p.add_argument("--train-share", type=float, default=0.95,
                   help="share of the window miners train; the validator works in the rest")
    p.add_argument("--blocks-per-window", type=int, default=d.blocks_per_window)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (same for both sides)")
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "validator")
    t = p.add_argument_group("throughput: one at a time against batched (--miners)")
    t.add_argument("--miners", type=int, default=0, help="submissions in the window (0: the cost table instead)")
    t.add_argument("--evaluate", type=int, default=0, help="miners each evaluator evaluates (0: max_evaluations)")
    t.add_argument("--honest", type=int, default=4, help="trained (honest) updates among the submissions")
    t.add_argument("--models-per-pass", type=int, default=0, help="batched: miners per pass (0: 16 on CUDA, 1 on CPU)")
    t.add_argument("--eval-memory-gib", type=float, default=2.0, help="batched: memory for evaluation passes")
    t.add_argument("--quick", action="store_true",
                   help=f"--miners: {QUICK_EVALUATE} evaluated per evaluator (slope from {QUICK_EVALUATE // 2} to "
                        f"{QUICK_EVALUATE}) and 1 repeat; capacity from the measured per-miner costs as always")
    args = p.parse_args(argv)
    if args.quick:
        args.evaluate, args.repeats = args.evaluate or QUICK_EVALUATE, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.submissions < 2:
        raise SystemExit("--submissions must be at least 2 (the slope needs two points)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = bc.pick_device(args.device)
    cfg = SubnetConfig(preset=args.preset, blocks_per_window=args.blocks_per_window)
    if args.miners:
        return throughput(args, cfg, builtin_corpus(), device)
    costs = measure(cfg, builtin_corpus(), args.submissions, args.repeats, device)
    window_s = cfg.blocks_per_window * CHAIN_BLOCK_S
    shares = sorted({args.train_share, 0.95, 0.9, 0.8, 0.5})
    print_report(cfg, costs, window_s, shares)
    fields = {"eval_cost_vs_inner_step": costs.per_miner / costs.inner_step,
              "miners_per_window": capacity(costs, window_s, args.train_share),
              "per_miner_ms": costs.per_miner * 1e3, "inner_step_ms": costs.inner_step * 1e3,
              "max_evaluations": cfg.max_evaluations, "preset": cfg.preset}
    record = {"costs": costs.__dict__, "window_s": window_s, "train_share": args.train_share,
              "machine": bc.machine_info(device), **fields}
    print(f"wrote {bc.write_json(args.out, f'validator-{cfg.preset}.json', record)}")
    print(bc.summary_line(fields))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
