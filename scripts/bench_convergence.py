#!/usr/bin/env python3
"""Does the network train as well as one machine would? Three runs at equal tokens.

(a) ``adamw``   — centralized AdamW, the data-centre baseline: one model, global batch
                  M x B, H steps per window (what M GPUs in data parallel would do).
(b) ``dense``   — the network's algorithm with dense pseudo-gradients: M simulated
                  miners, H inner AdamW steps each from θ_w, Δ = θ_w − θ_local,
                  median-norm clip + mean (``protocol.outer.aggregate``), outer step.
(c) ``network`` — the network as shipped: (b) plus error feedback, the codec's
                  compress/encode/decode round trip (the bytes a miner uploads), top-G
                  selection, and the aggregate payload every node downloads.

Equal tokens: in window w, miner ``uid`` trains on ``assigned_samples(seed, w, uid,
H*B)`` in H batches of B; the AdamW baseline's step h of window w is the concatenation
of every miner's batch h (M*B samples). All three see the very same samples, in the
same windows, so after window w every variant has consumed w*M*H*B*T tokens and is
evaluated on the same fixed validation samples.

Usage:
    python scripts/bench_convergence.py --quick            # a few minutes on 2 CPU cores
    python scripts/bench_convergence.py                    # the longer default run
    python scripts/bench_convergence.py --device cuda --preset small

Last line: ``loss_ratio_vs_adamw=<x> loss_ratio_vs_dense=<x> compression_ratio_fp32=<x>``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import _bench_common as bc

bc.ensure_repo_on_path()

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from miner.submit import build_submission  # noqa: E402
from miner.trainer import InnerTrainer  # noqa: E402
from node.model_state import ModelState  # noqa: E402
from protocol import codec, windows  # noqa: E402
from protocol.data import TokenDataset, builtin_corpus  # noqa: E402
from protocol.messages import Submission, unpack_envelope  # noqa: E402
from protocol.model import build_model, count_params, initial_model, lm_loss, preset  # noqa: E402
from protocol.outer import OuterOptimizer, aggregate  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from validator.aggregation import build_aggregate  # noqa: E402
from validator.evaluate import Evaluator  # noqa: E402
from validator.store import StoredSubmission  # noqa: E402

VARIANTS = ("adamw", "dense", "network")
DENSE_OUTER_LR = 1.0  # the dense variant's outer lr (its best: docs/benchmarks.md)


@dataclass(frozen=True)
class Experiment:
    """One benchmark's shared settings (every variant uses all of them that apply)."""

    subnet: SubnetConfig  # model preset, seed, H, B, T, lrs, codec, EF beta, top-G
    miners: int  # M simulated miners (uids 0..M-1)
    windows: int  # W windows
    adamw_lr: float  # the baseline's lr (defaults to the inner lr)
    dense_outer_lr: float  # the dense variant's outer lr (default 1.0, its best)
    aggregate_all: bool  # diagnosis: aggregate every honest miner, whatever its score
    aggregation: str  # SubnetConfig.aggregation: "per-position" (shipped) or "mean"
    val_samples: int  # fixed validation samples (val split) the curves are measured on
    device: str

    @property
    def tokens_per_window(self) -> int:
        s = self.subnet
        return self.miners * s.inner_steps * s.batch_size * s.seq_len


@dataclass
class Curve:
    """Validation loss after each window, against tokens consumed."""

    tokens: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, tokens: int, loss: float) -> None:
        self.tokens.append(tokens)
        self.val_loss.append(loss)

    @property
    def final(self) -> float:
        return self.val_loss[-1]


@dataclass
class Traffic:
    """Bytes on the wire in the network variant (codec payloads only, no HTTP framing)."""

    upload_bytes: list[int] = field(default_factory=list)  # one per miner per window
    download_bytes: list[int] = field(default_factory=list)  # one aggregate per window
    contributors: list[int] = field(default_factory=list)  # aggregated miners per window
    zero_scores: dict[str, int] = field(default_factory=dict)  # honest, scored 0


# ---------------------------------------------------------------------------- data


def miner_batches(ds: TokenDataset, s: SubnetConfig, window: int, uid: int) -> list[Tensor]:
    """The H (B, T+1) batches miner ``uid`` trains on in ``window`` (the nodes' assignment)."""
    population = ds.num_samples(s.seq_len)
    idx = windows.assigned_samples(s.seed_bytes, window, uid, s.samples_per_window, population)
    samples = ds.batch(idx, s.seq_len)  # (H*B, T+1)
    return list(samples.split(s.batch_size))


def validation_batches(ds: TokenDataset, seq_len: int, count: int, batch: int = 16) -> list[Tensor]:
    """``count`` val samples spread evenly over the val split, in batches."""
    n = ds.num_samples(seq_len, "val")
    if n < 1:
        raise ValueError(f"the val split has no sample of seq_len {seq_len}")
    idx = sorted({int(i * n / count) for i in range(min(count, n))})
    return list(ds.batch(idx, seq_len, "val").split(batch))


@torch.no_grad()
def val_loss(model: nn.Module, val: Sequence[Tensor], device: torch.device) -> float:
    """Mean loss over the validation batches (weighted by batch size)."""
    model.eval()
    total, count = 0.0, 0
    for b in val:
        total += float(lm_loss(model, b.to(device))) * b.shape[0]
        count += b.shape[0]
    return total / count


# ---------------------------------------------------------------------------- variants


def run_adamw(exp: Experiment, ds: TokenDataset, val: list[Tensor]) -> Curve:
    """Centralized AdamW over the same samples: step h of window w sees all miners' batch h."""
    s, device = exp.subnet, torch.device(exp.device)
    trainer = InnerTrainer(preset(s.preset), lr=exp.adamw_lr, weight_decay=s.inner_weight_decay,
                           device=device)
    trainer.load_base(initial_params(s))
    curve, started = Curve(), time.perf_counter()
    curve.add(0, val_loss(trainer.model, val, device))
    for w in range(exp.windows):
        per_miner = [miner_batches(ds, s, w, uid) for uid in range(exp.miners)]
        for h in range(s.inner_steps):
            trainer.step(torch.cat([batches[h] for batches in per_miner]))
        curve.add((w + 1) * exp.tokens_per_window, val_loss(trainer.model, val, device))
    curve.seconds = time.perf_counter() - started
    return curve


def initial_params(s: SubnetConfig) -> dict[str, Tensor]:
    """θ_0 exactly as every node builds it from the subnet seed."""
    model = initial_model(s)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class SimMiner:
    """One simulated miner: its own inner AdamW state and error-feedback buffer."""

    def __init__(self, exp: Experiment, uid: int) -> None:
        s = exp.subnet
        self.uid = uid
        self.hotkey = bc.fake_hotkey(uid)
        self.trainer = InnerTrainer(preset(s.preset), lr=s.inner_lr,
                                    weight_decay=s.inner_weight_decay, device=exp.device)
        self.feedback = codec.ErrorFeedback(beta=s.error_feedback_beta)

    def pseudo_gradient(self, base: dict[str, Tensor], batches: list[Tensor]) -> dict[str, Tensor]:
        return self.trainer.train(base, batches).delta

    def submission(self, s: SubnetConfig, state: ModelState, delta: dict[str, Tensor],
                   indices: list[int]) -> StoredSubmission:
        """Error feedback + encode (the uploaded bytes), then the validator's intake decode."""
        ccfg = s.codec_config()
        payload = codec.encode(self.feedback.step(delta, ccfg), ccfg)
        body = build_submission(s, window=state.window, uid=self.uid, hotkey=self.hotkey,
                                base_model_hash=state.hash(), indices=indices, payload=payload)
        header, received = unpack_envelope(body, Submission)
        update = codec.decode(received, state.spec, ccfg)
        return StoredSubmission.summarize(header, received, update, state.spec)


def assigned(ds: TokenDataset, s: SubnetConfig, window: int, uid: int) -> list[int]:
    return windows.assigned_samples(s.seed_bytes, window, uid, s.samples_per_window,
                                    ds.num_samples(s.seq_len))


def run_dense(exp: Experiment, ds: TokenDataset, val: list[Tensor]) -> Curve:
    """DiLoCo-style: every miner's dense Δ, clipped to the median norm, averaged, outer step."""
    s, device = exp.subnet, torch.device(exp.device)
    state = ModelState.initial(s)
    state.outer = _outer(exp, exp.dense_outer_lr)
    miners = [SimMiner(exp, uid) for uid in range(exp.miners)]
    evaluator = build_model(preset(s.preset)).to(device)
    curve, started = Curve(), time.perf_counter()
    curve.add(0, _eval_global(evaluator, state.model, val, device))
    for w in range(exp.windows):
        base = {k: v.clone() for k, v in state.params().items()}
        deltas = [m.pseudo_gradient(base, miner_batches(ds, s, w, m.uid)) for m in miners]
        state.outer.apply(state.model, aggregate(deltas))
        state.window += 1
        curve.add((w + 1) * exp.tokens_per_window, _eval_global(evaluator, state.model, val, device))
    curve.seconds = time.perf_counter() - started
    return curve


def run_network(exp: Experiment, ds: TokenDataset, val: list[Tensor]) -> tuple[Curve, Traffic]:
    """M miners in one process, sequentially, through the nodes' own code: miner trainer,
    error feedback + codec, submission envelope, validator evaluation and scoring, top-G
    aggregate with its payload, and ``ModelState.apply_aggregate`` (hash-checked)."""
    s, device = exp.subnet, torch.device(exp.device)
    state = ModelState.initial(s)
    state.outer = _outer(exp)
    miners = [SimMiner(exp, uid) for uid in range(exp.miners)]
    judge = Evaluator(s, ds, device=exp.device)
    evaluator, traffic = build_model(preset(s.preset)).to(device), Traffic()
    curve, started = Curve(), time.perf_counter()
    curve.add(0, _eval_global(evaluator, state.model, val, device))
    last_evaluated: dict[int, int] = {}
    previous_norm: float | None = None  # the validator's ScoreBook.previous_norm
    for w in range(exp.windows):
        base = {k: v.clone() for k, v in state.params().items()}
        subs = []
        for m in miners:
            delta = m.pseudo_gradient(base, miner_batches(ds, s, w, m.uid))
            subs.append(m.submission(s, state, delta, assigned(ds, s, w, m.uid)))
            traffic.upload_bytes.append(len(subs[-1].payload))
        result = judge.evaluate_window(state, subs, last_evaluated=last_evaluated, secret=b"bench",
                                       previous_norm=previous_norm, registered=len(miners))
        last_evaluated.update({uid: w for uid in result.evaluations})
        previous_norm = result.median_norm or previous_norm
        count_zero_scores(result, traffic)
        verdicts = result.verdicts
        if exp.aggregate_all:
            verdicts = {u: replace(v, score=1.0, reason="ok") for u, v in verdicts.items()}
        header, payload = build_aggregate(state, verdicts, result.dense,
                                          {m.uid: m.hotkey for m in miners}, s)
        traffic.download_bytes.append(len(payload))
        traffic.contributors.append(len(header.contributors))
        state.apply_aggregate(header, payload)
        curve.add((w + 1) * exp.tokens_per_window, _eval_global(evaluator, state.model, val, device))
    curve.seconds = time.perf_counter() - started
    return curve, traffic


def count_zero_scores(result: Any, traffic: Traffic) -> None:
    """Why honest miners got a zero window score (the criteria's verdict reasons)."""
    for verdict in result.verdicts.values():
        if verdict.score <= 0:
            traffic.zero_scores[verdict.reason] = traffic.zero_scores.get(verdict.reason, 0) + 1


def _outer(exp: Experiment, lr: float | None = None) -> OuterOptimizer:
    s = exp.subnet
    return OuterOptimizer(lr or s.outer_lr, s.outer_momentum, s.outer_nesterov)


def _eval_global(evaluator: nn.Module, model: nn.Module, val: list[Tensor], device: torch.device) -> float:
    evaluator.load_state_dict(model.state_dict())
    return val_loss(evaluator, val, device)


# ---------------------------------------------------------------------------- report


def plot_curves(curves: dict[str, Curve], title: str, path: Path) -> Path | None:
    """Validation loss vs tokens for each variant, as PNG (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no PNG (pip install matplotlib)")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, c in curves.items():
        ax.plot([t / 1e6 for t in c.tokens], c.val_loss, label=name)
    ax.set_xlabel("tokens (millions)")
    ax.set_ylabel("validation loss")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def summarize(exp: Experiment, curves: dict[str, Curve], traffic: Traffic, n_params: int) -> dict[str, Any]:
    """Ratios and traffic figures for the last line and the JSON record."""
    dense_bytes = 4 * n_params
    upload = statistics.mean(traffic.upload_bytes) if traffic.upload_bytes else math.nan
    download = statistics.mean(traffic.download_bytes) if traffic.download_bytes else math.nan
    net = curves["network"].final
    return {
        "loss_ratio_vs_adamw": net / curves["adamw"].final,
        "loss_ratio_vs_dense": net / curves["dense"].final,
        "compression_ratio_fp32": dense_bytes / upload,
        "final_loss": {k: c.final for k, c in curves.items()},
        "seconds": {k: round(c.seconds, 1) for k, c in curves.items()},
        "params": n_params,
        "miners": exp.miners,
        "dense_fp32_bytes": dense_bytes,
        "upload_bytes_per_miner_window": upload,
        "download_bytes_per_window": download,
        "download_ratio_fp32": dense_bytes / download,
        "contributors_mean": statistics.mean(traffic.contributors) if traffic.contributors else math.nan,
        "zero_scores": traffic.zero_scores,
        "tokens_total": exp.windows * exp.tokens_per_window,
    }


def print_table(curves: dict[str, Curve], stats: dict[str, Any]) -> None:
    rows = [[name, c.val_loss[0], c.final, c.final / curves["adamw"].final, round(c.seconds, 1)]
            for name, c in curves.items()]
    print(bc.markdown_table(["variant", "val loss start", "val loss end", "vs adamw", "seconds"], rows))
    print(f"params={stats['params']} tokens={stats['tokens_total']} "
          f"upload/miner/window={bc.human_bytes(stats['upload_bytes_per_miner_window'])} "
          f"download/window={bc.human_bytes(stats['download_bytes_per_window'])} "
          f"dense fp32={bc.human_bytes(stats['dense_fp32_bytes'])} "
          f"contributors/window={stats['contributors_mean']:.2f} of {stats['miners']}")


# ---------------------------------------------------------------------------- cli

# Run sizes per preset. "steps" is each miner's inner steps over the whole run, so the
# token budget stays fixed whatever H is (windows = steps // H): M * steps * B * T tokens.
QUICK: dict[str, dict[str, int]] = {
    "tiny": {"miners": 4, "steps": 800, "val_samples": 128},  # 1.64 M tokens, ~3 min
    "small": {"miners": 4, "steps": 100, "val_samples": 64},  # 0.2 M tokens, <= 15 min on 2 cores
}
DEFAULT: dict[str, dict[str, int]] = {
    "tiny": {"miners": 8, "steps": 2000, "val_samples": 128},  # 8.2 M tokens, ~15 min
    "small": {"miners": 4, "steps": 400, "val_samples": 128},
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    d = SubnetConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help=f"short run: {QUICK}")
    p.add_argument("--preset", default="tiny", choices=sorted(QUICK), help="model preset")
    p.add_argument("--miners", type=int, help="M (default: per preset, see --quick)")
    p.add_argument("--windows", type=int, help="W (default: the preset's steps // H)")
    p.add_argument("--inner-steps", type=int, help="H (default: the subnet default for the preset)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="B per miner")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="T")
    p.add_argument("--inner-lr", type=float, help="inner AdamW lr (default: the subnet default for the preset)")
    p.add_argument("--adamw-lr", type=float, help="baseline lr (default: --inner-lr)")
    p.add_argument("--outer-lr", type=float, default=d.outer_lr)
    p.add_argument("--dense-outer-lr", type=float, default=DENSE_OUTER_LR,
                   help="outer lr of the dense variant (each variant at its best)")
    p.add_argument("--outer-momentum", type=float, default=d.outer_momentum)
    p.add_argument("--nesterov", action="store_true", default=d.outer_nesterov, help="Nesterov outer momentum")
    p.add_argument("--chunk", type=int, default=d.codec_chunk)
    p.add_argument("--topk", type=int, default=d.codec_topk, help="values kept per chunk")
    p.add_argument("--bits", type=int, default=d.codec_bits)
    p.add_argument("--ef-beta", type=float, default=d.error_feedback_beta)
    p.add_argument("--top-g", type=int, default=d.top_g)
    p.add_argument("--aggregate-all", action="store_true",
                   help="diagnosis: aggregate every miner, ignoring the scores' top-G choice")
    p.add_argument("--aggregation", choices=("per-position", "mean"), default=d.aggregation,
                   help="per-position: each position averaged over the contributors that sent it "
                        "(shipped); mean: the plain mean")
    p.add_argument("--val-samples", type=int, help="fixed val samples the curves are measured on (default: per preset)")
    p.add_argument("--seed", default=d.seed, help="subnet seed (model init and data assignment)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="subset to run (ratios need all)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: the small matmuls of these presets gain little from "
                        "threading, and a shared CPU makes more threads slower; 0: torch's default)")
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "convergence", help="PNG + JSON here")
    return p.parse_args(argv)


def experiment_from(args: argparse.Namespace) -> Experiment:
    size = (QUICK if args.quick else DEFAULT)[args.preset]
    preset_cfg = SubnetConfig(preset=args.preset)
    h = args.inner_steps or preset_cfg.inner_steps
    inner_lr = args.inner_lr or preset_cfg.inner_lr
    subnet = SubnetConfig(
        seed=args.seed, preset=args.preset, seq_len=args.seq_len,
        batch_size=args.batch_size, inner_steps=h, inner_lr=inner_lr,
        codec_chunk=args.chunk, codec_topk=args.topk, codec_bits=args.bits,
        error_feedback_beta=args.ef_beta, outer_lr=args.outer_lr, outer_momentum=args.outer_momentum,
        outer_nesterov=args.nesterov and args.outer_momentum > 0, top_g=args.top_g, aggregation=args.aggregation,
    )
    return Experiment(
        subnet=subnet, miners=args.miners or size["miners"], windows=args.windows or max(1, size["steps"] // h),
        adamw_lr=args.adamw_lr or inner_lr, dense_outer_lr=args.dense_outer_lr,
        aggregate_all=args.aggregate_all, aggregation=args.aggregation,
        val_samples=args.val_samples or size["val_samples"], device=str(bc.pick_device(args.device)),
    )


def run(exp: Experiment, variants: Sequence[str], out: Path) -> dict[str, Any]:
    """Run the chosen variants on the builtin corpus; write PNG + JSON; return the record."""
    s = exp.subnet
    ds = builtin_corpus()
    val = validation_batches(ds, s.seq_len, exp.val_samples)
    curves: dict[str, Curve] = {}
    traffic = Traffic()
    for name in variants:
        if name == "adamw":
            curves[name] = run_adamw(exp, ds, val)
        elif name == "dense":
            curves[name] = run_dense(exp, ds, val)
        else:
            curves[name], traffic = run_network(exp, ds, val)
        extra = (f", {statistics.mean(traffic.contributors):.2f} contributors/window, honest "
                 f"miners scored 0: {traffic.zero_scores}" if name == "network" and traffic.contributors else "")
        print(f"{name}: final val loss {curves[name].final:.4f} in {curves[name].seconds:.1f}s{extra}",
              flush=True)
    n_params = count_params(build_model(preset(s.preset)))
    record: dict[str, Any] = {"experiment": _exp_dict(exp), "machine": bc.machine_info(torch.device(exp.device)),
                              "curves": {k: asdict(c) for k, c in curves.items()}}
    if set(VARIANTS) <= set(curves):
        record["summary"] = summarize(exp, curves, traffic, n_params)
        print_table(curves, record["summary"])
    title = (f"{s.preset}: M={exp.miners} H={s.inner_steps} B={s.batch_size} T={s.seq_len} "
             f"W={exp.windows}, topk {s.codec_topk}/{s.codec_chunk}² {s.codec_bits}-bit, "
             f"EF β={s.error_feedback_beta}, outer lr {s.outer_lr} ({exp.aggregation})")
    record["png"] = str(plot_curves(curves, title, out / "convergence.png"))
    record["json"] = str(bc.write_json(out, "convergence.json", record))
    return record


def _exp_dict(exp: Experiment) -> dict[str, Any]:
    d = asdict(exp)
    d["subnet"] = exp.subnet.model_dump()
    return d


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    exp = experiment_from(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    record = run(exp, variants, args.out)
    summary = record.get("summary")
    if summary is None:
        print("(ratios need all three variants)")
        return 0
    print(f"wrote {record['png']} and {record['json']}")
    print(bc.summary_line({k: summary[k] for k in
                           ("loss_ratio_vs_adamw", "loss_ratio_vs_dense", "compression_ratio_fp32")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
