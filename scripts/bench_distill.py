#!/usr/bin/env python3
"""Distillation through the network (outputs mode): does the student learn more from the
miners' verified teacher outputs than from the data alone, what does it cost, what is caught?

1. **The network.** ``--miners`` honest miners label their assigned samples each window with
   the pinned teacher (``miner.teacher.Labeler``, the same wall-clock ``--budget-s`` each),
   encode (``protocol.outputs_codec``), submit (``build_submission`` → ``Intake.admit``); the
   validator verifies (``OutputsVerifier``) and trains the student on what passed
   (``build_student_update``; every node applies it). Beside it, on exactly the same samples in
   the same order, with the same optimizer and the same published-update path, the student is
   trained (a) on the hard labels, (c) on the teacher's exact full-vocabulary log-probs.
   Reported: the students' validation losses, bytes per token, the validator's verification
   compute as a share of the miners' (teacher positions computed; ``verify_cost_share``) and
   its wall-clock time as a share of their labelling time (noisy on a shared machine).
2. **Honest numerical differences.** The teacher recomputed other honest ways (fp32 at batch 1,
   fp32 on 2 threads, bf16 autocast, bf16 weights; on a GPU also CUDA fp32 and bf16) and checked
   against fp32 (both directions): deviations and the mismatch rate at the subnet's tolerance.
3. **Cheats.** Each cheat of ``miner.cheats`` for one uid's samples: the share of its positions
   that fail a check, one pass through intake and the real verifier, and its detection rate
   over ``--secrets`` validator secrets (the real ``draw_checks``, the default spot checks).

Usage:
    python scripts/bench_distill.py --quick      # a few minutes (after the teacher is cached)
    python scripts/bench_distill.py

Last line: ``student_loss_ratio_vs_hard=… vs_full_logits=… bytes_per_token=… verify_cost_share=…
false_reject_rate=… min_cheat_detection=…``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import _bench_common as bc

bc.ensure_repo_on_path()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from miner import cheats  # noqa: E402
from miner.submit import build_submission  # noqa: E402
from miner.teacher import Labeler  # noqa: E402
from node.model_state import ModelState  # noqa: E402
from node.teacher import Teacher, load_teacher, teacher_hash_of  # noqa: E402
from protocol import outputs_codec  # noqa: E402
from protocol.aggregate_payload import encode_aggregate  # noqa: E402
from protocol.data import TokenDataset, builtin_corpus  # noqa: E402
from protocol.distill import (  # noqa: E402
    check_positions,
    detection_probability,
    draw_checks,
    full_kl_loss,
    outputs_spec,
    teacher_topk,
)
from protocol.outputs_codec import TeacherOutputs  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from protocol.windows import assigned_samples  # noqa: E402
from swarmtrain.local_teacher import local_teacher  # noqa: E402
from validator.evaluate import validation_indices, validation_loss  # noqa: E402
from validator.intake import Intake, IntakeView  # noqa: E402
from validator.settings import ValidatorSettings  # noqa: E402
from validator.store import SubmissionStore  # noqa: E402
from validator.student import (  # noqa: E402
    StudentBatch,
    StudentTrainer,
    batch_of,
    build_student_update,
    student_rows,
)
from validator.verify_outputs import OutputsVerifier  # noqa: E402

VARIANTS = ("hard", "network", "full")
SECRET = b"bench-distill-validator-secret".ljust(32, b".")


# ---------------------------------------------------------------------------- the network


class CapturingTeacher:
    """A teacher that also keeps the full log-probs it computes (for variant (c))."""

    def __init__(self, teacher: Teacher) -> None:
        self.teacher, self.seen = teacher, list[torch.Tensor]()

    def logprobs(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.teacher.logprobs(inputs)
        self.seen.append(out)
        return out

    def batch_size(self, seq_len: int) -> int:
        return self.teacher.batch_size(seq_len)


@dataclass(frozen=True)
class FullBatch(StudentBatch):
    full: torch.Tensor = field(default_factory=lambda: torch.zeros(0))


def hard_loss(logits: torch.Tensor, batch: StudentBatch) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch.tokens[:, 1:].reshape(-1))


def full_loss(logits: torch.Tensor, batch: StudentBatch) -> torch.Tensor:
    assert isinstance(batch, FullBatch)
    return full_kl_loss(logits, batch.full)


@dataclass
class NetRun:
    val: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    label_s: float = 0.0
    verify_s: float = 0.0
    positions: int = 0
    check_tokens: int = 0
    checks: int = 0
    honest_failed: int = 0
    honest_rejected: float = 0.0  # share of honest submissions the verifier zeroed
    payload_bytes: int = 0
    samples: list[int] = field(default_factory=list)  # per miner and window


def fake_hotkey(uid: int) -> str:
    return bc.fake_hotkey(uid)


def label_miner(cfg: SubnetConfig, ds: TokenDataset, teacher: Teacher, indices: list[int], budget_s: float
                ) -> tuple[TeacherOutputs, torch.Tensor, float]:
    """One honest miner's window: its outputs, the full log-probs behind them, its labelling seconds."""
    capture = CapturingTeacher(teacher)
    labeler = Labeler(capture, cfg)  # type: ignore[arg-type]
    deadline = time.monotonic() + budget_s
    result = labeler.label(ds.batch(indices, cfg.seq_len), lambda: time.monotonic() > deadline)
    return result.outputs, torch.cat(capture.seen), result.seconds


def run_network(cfg: SubnetConfig, ds: TokenDataset, teacher: Teacher, args: argparse.Namespace) -> NetRun:
    run, population = NetRun(), ds.num_samples(cfg.seq_len)
    states = {v: ModelState.initial(cfg) for v in VARIANTS}
    trainers = {"hard": StudentTrainer.for_subnet(cfg), "network": StudentTrainer.for_subnet(cfg),
                "full": StudentTrainer.for_subnet(cfg)}
    trainers["hard"].loss, trainers["full"].loss = hard_loss, full_loss
    verifier = OutputsVerifier(cfg, ds, teacher)
    val_idx = validation_indices(ds, cfg, args.val_samples)
    for v in VARIANTS:
        run.val[v].append(validation_loss(states[v].clone_model(), ds, cfg, val_idx))
    hotkeys = {u: fake_hotkey(u) for u in range(args.miners)}
    for w in range(args.windows):
        state = states["network"]
        intake = make_intake(cfg, ds, state, hotkeys)
        subs, full = [], {}
        for uid in range(args.miners):
            indices = assigned_samples(cfg.seed_bytes, w, uid, cfg.samples_per_window, population)
            outputs, full[uid], seconds = label_miner(cfg, ds, teacher, indices, args.budget_s)
            payload = outputs_codec.encode(outputs, outputs_spec(cfg))
            body = build_submission(cfg, window=w, uid=uid, hotkey=hotkeys[uid], base_model_hash=state.hash(),
                                    indices=indices[: outputs.n_samples], payload=payload)
            subs.append(intake.admit(body, hotkeys[uid]))
            run.label_s, run.positions, run.payload_bytes = run.label_s + seconds, run.positions + outputs.positions, run.payload_bytes + len(payload)
            run.samples.append(outputs.n_samples)
        result = verifier.verify_window(state, subs, last_evaluated={}, secret=SECRET + w.to_bytes(4, "little"))
        run.honest_rejected = max(run.honest_rejected, sum(v.score == 0 for v in result.verdicts.values()) / len(subs))
        for check in result.checks.values():
            run.verify_s += check.seconds
            run.check_tokens += check.tokens
            run.checks += check.checks
            run.honest_failed += check.failed
        train_window(cfg, ds, states, trainers, result.accepted, full, hotkeys)
        for v in VARIANTS:
            run.val[v].append(validation_loss(states[v].clone_model(), ds, cfg, val_idx))
        print(f"window {w}: samples {run.samples[-args.miners:]} val loss " +
              " ".join(f"{v}={run.val[v][-1]:.4f}" for v in VARIANTS), flush=True)
    return run


def make_intake(cfg: SubnetConfig, ds: TokenDataset, state: ModelState, hotkeys: dict[int, str]) -> Intake:
    view = IntakeView(open_window=state.window, ready=True, model_hash=state.hash(), hotkeys=dict(hotkeys))
    return Intake(view, SubmissionStore(), cfg, ValidatorSettings(netuid=cfg.netuid, state_dir=Path("unused")),
                  self_hotkey=fake_hotkey(999), population=ds.num_samples(cfg.seq_len), spec=state.spec)


def train_window(cfg: SubnetConfig, ds: TokenDataset, states: dict[str, ModelState], trainers: dict[str, StudentTrainer],
                 accepted: dict, full: dict[int, torch.Tensor], hotkeys: dict[int, str]) -> None:
    """The window's student step for each variant, on the same rows; (b) by the validator's own code."""
    w = states["network"].window
    header, payload, _ = build_student_update(states["network"], accepted, hotkeys, cfg, trainers["network"], ds)
    states["network"].apply_aggregate(header, payload)
    rows = student_rows(accepted, w)
    chunks = [rows[i : i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
    for v in ("hard", "full"):
        batches = [batch_of(ds, cfg, accepted, c) for c in chunks]
        if v == "full":
            batches = [FullBatch(b.tokens, b.ids, b.logp, b.logp_rest, torch.stack([full[u][j] for u, j in c]))
                       for b, c in zip(batches, chunks, strict=True)]
        delta, _ = trainers[v].train(states[v].params(), batches)
        states[v].apply_payload(w, encode_aggregate(delta, states[v].spec), 1)


# ---------------------------------------------------------------------------- honest differences


def honest_variants(teacher: Teacher, inputs: torch.Tensor, with_cuda: bool) -> dict[str, torch.Tensor]:
    """The teacher's log-probs computed other honest ways (fp32 reference first)."""
    model = teacher.model
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        out["fp32 batch 32"] = torch.cat([torch.log_softmax(model(inputs[i : i + 32]).float(), -1) for i in range(0, len(inputs), 32)])
        out["fp32 batch 1"] = torch.cat([torch.log_softmax(model(inputs[i : i + 1]).float(), -1) for i in range(len(inputs))])
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        out["fp32 2 threads"] = torch.log_softmax(model(inputs).float(), -1)
        torch.set_num_threads(threads)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out["bf16 autocast (cpu)"] = torch.log_softmax(model(inputs).float(), -1)
        out["bf16 weights (cpu)"] = torch.log_softmax(copy.deepcopy(model).to(torch.bfloat16)(inputs).float(), -1)
        if with_cuda:
            gpu = copy.deepcopy(model).cuda()
            out["fp32 (cuda)"] = torch.log_softmax(gpu(inputs.cuda()).float(), -1).cpu()
            out["bf16 weights (cuda)"] = torch.log_softmax(gpu.to(torch.bfloat16)(inputs.cuda()).float(), -1).cpu()
    return out


def mismatch_study(cfg: SubnetConfig, ds: TokenDataset, teacher: Teacher, samples: int, secrets: int
                   ) -> dict[str, dict[str, float]]:
    """Per honest variant, as the miner's computation against the validator's fp32 (the validator
    recomputes in fp32 on any device) and the other way round: the rule's deviations, the share
    of positions beyond ``outputs_tolerance``, and over ``secrets`` draws of the spot checks the
    largest median deviation and the share of submissions the rule would reject."""
    population = ds.num_samples(cfg.seq_len)
    idx = assigned_samples(cfg.seed_bytes, 10_000, 0, samples, population)
    inputs = ds.batch(idx, cfg.seq_len)[:, :-1]
    logs = honest_variants(teacher, inputs, torch.cuda.is_available())
    names = list(logs)
    ref = logs[names[0]].reshape(-1, cfg.vocab_size)
    rows: dict[str, dict[str, float]] = {}
    for name in names[1:]:
        other = logs[name].reshape(-1, cfg.vocab_size)
        devs = [rule_deviation(cfg, miner, validator) for miner, validator in ((other, ref), (ref, other))]
        dev = np.concatenate(devs)
        listed = ref.topk(cfg.outputs_topk, -1).indices
        raw = (other.gather(-1, listed) - ref.gather(-1, listed)).abs().max().item()
        medians, rejected = zip(*(draw_outcome(cfg, d, secrets) for d in devs), strict=True)
        rows[name] = {"positions": len(ref), "raw_max_abs": raw, "rule_dev_max": float(dev.max()),
                      "rule_dev_p999": float(np.quantile(dev, 0.999)),
                      "mismatch_rate": float((dev > cfg.outputs_tolerance).mean()),
                      "median_of_checks_max": float(max(m.max() for m in medians)),
                      "rejected": float(max(r.mean() for r in rejected))}
    return rows


def draw_outcome(cfg: SubnetConfig, dev: np.ndarray, secrets: int, uid: int = 0, sha: str = "00" * 32
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Over ``secrets`` validator secrets: each draw's median deviation and whether the rule rejects
    (a checked position beyond ``outputs_tolerance`` or the median beyond ``outputs_median_tolerance``)."""
    medians, rejected = np.zeros(secrets), np.zeros(secrets, dtype=bool)
    for s in range(secrets):
        drawn = dev[draw_checks(hashlib.sha256(b"secret" + s.to_bytes(4, "little")).digest(), uid, sha, len(dev),
                                cfg.outputs_spot_checks)]
        medians[s] = np.median(drawn)
        rejected[s] = bool((drawn > cfg.outputs_tolerance).any() or medians[s] > cfg.outputs_median_tolerance)
    return medians, rejected


def rule_deviation(cfg: SubnetConfig, miner: torch.Tensor, validator: torch.Tensor) -> np.ndarray:
    out = teacher_topk(miner[None], cfg.outputs_topk, cfg.outputs_value_bits)
    return check_positions(out.ids[0], out.q[0], out.rest_q[0], validator, cfg.outputs_value_bits, cfg.outputs_tolerance).deviation


# ---------------------------------------------------------------------------- cheats


def cheat_outputs(cfg: SubnetConfig, ds: TokenDataset, teacher: Teacher, samples: int, window: int
                  ) -> tuple[list[int], torch.Tensor, dict[str, TeacherOutputs]]:
    """uid 0's first ``samples`` samples of ``window``, the teacher's fp32 log-probs there, and what each cheat sends."""
    population = ds.num_samples(cfg.seq_len)

    def assigned(w: int, uid: int) -> list[int]:
        return assigned_samples(cfg.seed_bytes, w, uid, cfg.samples_per_window, population)[:samples]

    def lab(t: Teacher, idx: list[int]) -> TeacherOutputs:
        return teacher_topk(torch.cat([t.logprobs(b[:, :-1]) for b in ds.batch(idx, cfg.seq_len).split(32)]),
                            cfg.outputs_topk, cfg.outputs_value_bits)

    own = assigned(window, 0)
    ref = torch.cat([teacher.logprobs(b[:, :-1]) for b in ds.batch(own, cfg.seq_len).split(32)])
    honest = teacher_topk(ref, cfg.outputs_topk, cfg.outputs_value_bits)
    student = ModelState.initial(cfg).model
    shape = (samples, cfg.seq_len, cfg.outputs_topk, cfg.vocab_size, cfg.outputs_value_bits)
    rng = np.random.default_rng(0)
    made: dict[str, Callable[[], TeacherOutputs]] = {
        "random": lambda: cheats.random_outputs(*shape, rng),
        "constant": lambda: cheats.constant_outputs(*shape),
        "smaller preset (student)": lambda: lab(Teacher(student, student.cfg, teacher.hash, teacher.device, torch.float32), own),
        "fewer layers (half)": lambda: lab(cheats.fewer_layers(teacher), own),
        "4-bit weights": lambda: lab(cheats.low_precision(teacher, 4), own),
        "6-bit weights": lambda: lab(cheats.low_precision(teacher, 6), own),
        "another uid's samples": lambda: lab(teacher, assigned(window, 1)),
        "earlier window": lambda: lab(teacher, assigned(window - 1, 0)),
        "wrong teacher (5% noise)": lambda: lab(cheats.perturbed(teacher, 0.05), own),
        "partial f=0.1": lambda: cheats.fake_tail(honest, 0.1, cfg.vocab_size, cfg.outputs_value_bits, rng),
    }
    return own, ref, {"honest": honest} | {name: fn() for name, fn in made.items()}


def detection(cfg: SubnetConfig, ref: torch.Tensor, outputs: TeacherOutputs, secrets: int) -> tuple[float, float, float]:
    """(share of positions beyond ``outputs_tolerance``, share of validator secrets whose checks
    reject it, median deviation over all its positions)."""
    k = cfg.outputs_topk
    dev = check_positions(outputs.ids.reshape(-1, k), outputs.q.reshape(-1, k), outputs.rest_q.reshape(-1),
                          ref.reshape(-1, cfg.vocab_size), cfg.outputs_value_bits, cfg.outputs_tolerance).deviation
    sha = hashlib.sha256(outputs_codec.encode(outputs, outputs_spec(cfg))).hexdigest()
    _, rejected = draw_outcome(cfg, dev, secrets, 0, sha)
    return float((dev > cfg.outputs_tolerance).mean()), float(rejected.mean()), float(np.median(dev))


def real_verdict(cfg: SubnetConfig, ds: TokenDataset, teacher: Teacher, own: list[int], outputs: TeacherOutputs,
                 window: int) -> str:
    """One pass of the cheat's submission through intake and the validator's verifier."""
    state = ModelState.initial(cfg)
    state.window = window
    intake = make_intake(cfg, ds, state, {0: fake_hotkey(0)})
    body = build_submission(cfg, window=window, uid=0, hotkey=fake_hotkey(0), base_model_hash=state.hash(),
                            indices=own[: outputs.n_samples], payload=outputs_codec.encode(outputs, outputs_spec(cfg)))
    sub = intake.admit(body, fake_hotkey(0))
    result = OutputsVerifier(cfg, ds, teacher).verify_window(state, [sub], last_evaluated={}, secret=SECRET)
    return result.verdicts[0].reason


def cheat_study(cfg: SubnetConfig, ds: TokenDataset, teacher: Teacher, args: argparse.Namespace) -> dict[str, dict]:
    own, ref, sent = cheat_outputs(cfg, ds, teacher, args.cheat_samples, window=1)
    rows = {}
    for name, outputs in sent.items():
        fail_share, rate, median = detection(cfg, ref, outputs, args.secrets)
        rows[name] = {"positions_failing": fail_share, "median_dev": median, "detected": rate,
                      "verdict": real_verdict(cfg, ds, teacher, own, outputs, 1)}
    for f in (0.02, 0.05, 0.25):
        outputs = cheats.fake_tail(sent["honest"], f, cfg.vocab_size, cfg.outputs_value_bits, np.random.default_rng(1))
        fail_share, rate, median = detection(cfg, ref, outputs, args.secrets)
        rows[f"partial f={f}"] = {"positions_failing": fail_share, "median_dev": median, "detected": rate,
                                  "verdict": "-", "curve": True}
    return rows


# ---------------------------------------------------------------------------- report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 miners x 2 windows, smaller studies (a few minutes)")
    p.add_argument("--windows", type=int, help="windows (default 4; --quick 2)")
    p.add_argument("--miners", type=int, help="honest miners (default 3; --quick 2)")
    p.add_argument("--samples", type=int, default=1024, help="outputs_samples: assigned per miner and window")
    p.add_argument("--budget-s", type=float, default=600.0, help="each miner's labelling budget per window (seconds)")
    p.add_argument("--teacher", type=Path, default=None, help="teacher file or HF dir (default: the cached local teacher, swarmtrain.local_teacher)")
    p.add_argument("--teacher-steps", type=int, default=1500, help="steps of the default local teacher")
    p.add_argument("--student-lr", type=float, default=None, help="the student's AdamW lr (default: the tiny preset's)")
    p.add_argument("--secrets", type=int, help="validator secrets per cheat (default 10000; --quick 2000)")
    p.add_argument("--cheat-samples", type=int, help="samples of the cheat study (default 200; --quick 100)")
    p.add_argument("--tolerance-samples", type=int, help="samples of the honest-difference study (default 128; --quick 48)")
    p.add_argument("--val-samples", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT)
    args = p.parse_args(argv)
    quick = args.quick
    args.windows = args.windows or (2 if quick else 4)
    args.miners = args.miners or (2 if quick else 3)
    args.secrets = args.secrets or (2000 if quick else 10000)
    args.cheat_samples = args.cheat_samples or (100 if quick else 200)
    args.tolerance_samples = args.tolerance_samples or (48 if quick else 128)
    return args


def subnet(args: argparse.Namespace, ds: TokenDataset) -> SubnetConfig:
    path = args.teacher or local_teacher(ds, steps=args.teacher_steps)
    fields = dict(task="outputs", preset="tiny", teacher=str(path), teacher_hash=teacher_hash_of(path),
                  dataset_hash=ds.content_hash, seq_len=64, batch_size=8, outputs_samples=args.samples, max_evaluations=64)
    if args.student_lr:
        fields["inner_lr"] = args.student_lr
    return SubnetConfig(**fields)


def report(cfg: SubnetConfig, run: NetRun, honest: dict, cheat_rows: dict) -> dict[str, float]:
    final = {v: run.val[v][-1] for v in VARIANTS}
    print("\n## student (tiny) validation loss, equal tokens and steps")
    print(bc.markdown_table(["window"] + list(VARIANTS), [[w] + [run.val[v][w] for v in VARIANTS] for w in range(len(run.val["hard"]))]))
    print("\n## honest numerical differences vs fp32 batch 32 (both directions)")
    print(bc.markdown_table(["variant", "positions", "max |Δ log p| (top-k)", "deviation max", "p99.9",
                             f"positions > {cfg.outputs_tolerance}", f"median of {cfg.outputs_spot_checks} checks, max",
                             "submissions rejected"],
                            [[n, r["positions"], r["raw_max_abs"], r["rule_dev_max"], r["rule_dev_p999"], r["mismatch_rate"],
                              r["median_of_checks_max"], r["rejected"]] for n, r in honest.items()]))
    print(f"\n## cheats ({cfg.outputs_spot_checks} checks per submission, tolerance {cfg.outputs_tolerance}, "
          f"median tolerance {cfg.outputs_median_tolerance})")
    print(bc.markdown_table(["cheat", f"positions > {cfg.outputs_tolerance}", "median deviation", "detected",
                             "1-(1-f)^c", "verdict (real path)"],
                            [[n, r["positions_failing"], r["median_dev"], r["detected"],
                              detection_probability(r["positions_failing"], cfg.outputs_spot_checks), r["verdict"]]
                             for n, r in cheat_rows.items()]))
    cheats_only = [r["detected"] for n, r in cheat_rows.items() if n != "honest" and not r.get("curve")]
    false_reject = max([r["rejected"] for r in honest.values()] + [run.honest_failed / max(run.checks, 1),
                                                                    run.honest_rejected, cheat_rows["honest"]["detected"]])
    return {
        "student_loss_ratio_vs_hard": final["network"] / final["hard"],
        "vs_full_logits": final["network"] / final["full"],
        "bytes_per_token": run.payload_bytes / run.positions,
        "verify_cost_share": run.check_tokens / run.positions,
        "false_reject_rate": false_reject,
        "min_cheat_detection": min(cheats_only),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.monotonic()
    ds = builtin_corpus()
    cfg = subnet(args, ds)
    teacher = load_teacher(cfg)
    print(f"teacher {teacher.config.name} ({sum(p.numel() for p in teacher.model.parameters()):,} params) "
          f"student tiny, {args.miners} miners x {args.windows} windows x {cfg.outputs_samples} samples of "
          f"{cfg.seq_len} tokens, top-{cfg.outputs_topk} at {cfg.outputs_value_bits} bits, {cfg.outputs_spot_checks} checks, "
          f"tolerance {cfg.outputs_tolerance}", flush=True)
    run = run_network(cfg, ds, teacher, args)
    honest = mismatch_study(cfg, ds, teacher, args.tolerance_samples, args.secrets)
    cheat_rows = cheat_study(cfg, ds, teacher, args)
    fields = report(cfg, run, honest, cheat_rows)
    print(f"\nlabelled {run.positions} positions in {run.label_s:.1f}s ({run.positions / run.label_s:.0f} tokens/s); "
          f"verification recomputed {run.check_tokens} teacher positions ({run.check_tokens / run.positions:.4f} of the "
          f"miners' compute) in {run.verify_s:.2f}s ({run.verify_s / run.label_s:.4f} of their labelling time); "
          f"{run.payload_bytes} payload bytes; {time.monotonic() - started:.0f}s in all")
    bc.write_json(args.out, "distill.json", {"args": vars(args) | {"out": str(args.out), "teacher": str(args.teacher)},
                                             "machine": bc.machine_info(torch.device("cpu")), "val": run.val,
                                             "honest": honest, "cheats": cheat_rows, "summary": fields,
                                             "verify_wall_share": run.verify_s / run.label_s})
    print(bc.summary_line(fields))


if __name__ == "__main__":
    main()
