#!/usr/bin/env python3
"""Benchmark the update codec on a real pseudo-gradient.

Builds a model preset, takes a few AdamW steps on the builtin corpus (random tokens if it
cannot be built), and measures the codec on delta = theta_start - theta_end: size against
dense fp32/bf16, throughput, reconstruction error, and bits per kept value.

    python scripts/bench_codec.py --preset small --repeats 5
    python scripts/bench_codec.py --quick     # about a minute
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import _bench_common as bc

bc.ensure_repo_on_path()

import torch  # noqa: E402

from protocol.codec import CodecConfig, compress, decode, decompress, encode, payload_stats  # noqa: E402
from protocol.model import build_model, lm_loss, preset  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--steps", type=int, default=5, help="AdamW steps that make the pseudo-gradient")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    d = SubnetConfig()
    p.add_argument("--chunk", type=int, default=d.codec_chunk, help="default: the subnet's")
    p.add_argument("--topk", type=int, default=d.codec_topk, help="default: the subnet's")
    p.add_argument("--bits", type=int, default=d.codec_bits, help="default: the subnet's")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--quick", action="store_true", help="2 timed repeats of a 3-step pseudo-gradient")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = min(args.repeats, 2), min(args.steps, 3)
    return args


def batches(args: argparse.Namespace, vocab: int) -> tuple[str, list[torch.Tensor]]:
    """(data source description, one (B, T+1) batch per step)."""
    gen = torch.Generator().manual_seed(0)
    try:
        from protocol.data import builtin_corpus

        ds = builtin_corpus()
        n = ds.num_samples(args.seq_len)
        picks = torch.randint(0, n, (args.steps, args.batch), generator=gen).tolist()
        return "builtin corpus", [ds.batch(ix, args.seq_len) for ix in picks]
    except (ImportError, OSError, ValueError) as e:
        shape = (args.batch, args.seq_len + 1)
        return f"random tokens ({e})", [torch.randint(0, vocab, shape, generator=gen) for _ in range(args.steps)]


def pseudo_gradient(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], str, float, float]:
    cfg = preset(args.preset)
    model = build_model(cfg, seed=0)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    source, data = batches(args, cfg.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for batch in data:
        opt.zero_grad(set_to_none=True)
        loss = lm_loss(model, batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    delta = {k: start[k] - v.detach() for k, v in model.named_parameters()}
    return delta, source, losses[0], losses[-1]


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first calls pay for allocator and kernel set-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(delta: dict[str, torch.Tensor], cfg: CodecConfig, repeats: int) -> dict[str, float]:
    spec = {k: tuple(v.shape) for k, v in delta.items()}
    numel = sum(v.numel() for v in delta.values())
    dense_mb = numel * 4 / 1e6
    update = compress(delta, cfg)
    data = encode(update, cfg)
    assert decode(data, spec, cfg) == update, "round trip mismatch"
    t_enc = median_time(lambda: encode(compress(delta, cfg), cfg), repeats)
    t_dec = median_time(lambda: decompress(decode(data, spec, cfg), spec), repeats)
    flat = torch.cat([v.reshape(-1) for v in delta.values()])
    rec = torch.cat([v.reshape(-1) for v in decompress(update, spec).values()])
    stats = payload_stats(update, cfg)
    n = stats["values"]
    kept = torch.cat([delta[k].reshape(-1)[u.indices] for k, u in update.items()])
    sent = torch.cat([u.values for u in update.values()])
    return {
        "params": numel, "values": n, "payload_bytes": len(data),
        "compression_ratio_fp32": numel * 4 / len(data), "compression_ratio_bf16": numel * 2 / len(data),
        "encode_mb_s": dense_mb / t_enc, "decode_mb_s": dense_mb / t_dec,
        "encode_s": t_enc, "decode_s": t_dec,
        "rel_error": float((flat - rec).norm() / flat.norm()),
        "cosine": float(torch.nn.functional.cosine_similarity(flat, rec, dim=0)),
        "kept_energy": float(kept.norm() ** 2 / flat.norm() ** 2),
        "quant_rel_error": float((kept - sent).norm() / kept.norm()),
        "index_bits_per_value": stats["index_bytes"] * 8 / n,
        "value_bits_per_value": stats["value_bytes"] * 8 / n,
        "total_bits_per_value": len(data) * 8 / n,
        "density": n / numel,
    }


def report(args: argparse.Namespace, source: str, losses: tuple[float, float], m: dict[str, float]) -> None:
    print(f"model preset={args.preset} params={m['params']:,}  data: {source}, "
          f"{args.steps} AdamW steps, loss {losses[0]:.3f} -> {losses[1]:.3f}")
    print(f"codec chunk={args.chunk} topk={args.topk} bits={args.bits}  "
          f"(torch threads={torch.get_num_threads()}, repeats={args.repeats})")
    rows = [
        ("dense fp32 bytes", f"{m['params'] * 4:,}"), ("dense bf16 bytes", f"{m['params'] * 2:,}"),
        ("encoded bytes", f"{m['payload_bytes']:,}"),
        ("compression vs fp32", f"{m['compression_ratio_fp32']:.1f}x"),
        ("compression vs bf16", f"{m['compression_ratio_bf16']:.1f}x"),
        ("kept values (density)", f"{m['values']:,} ({m['density'] * 100:.3f} %)"),
        ("index bits / value", f"{m['index_bits_per_value']:.2f}"),
        ("value bits / value", f"{m['value_bits_per_value']:.2f}"),
        ("total bits / value", f"{m['total_bits_per_value']:.2f}"),
        ("compress+encode", f"{m['encode_s'] * 1e3:.1f} ms = {m['encode_mb_s']:.0f} MB/s of fp32"),
        ("decode+decompress", f"{m['decode_s'] * 1e3:.1f} ms = {m['decode_mb_s']:.0f} MB/s of fp32"),
        ("relative error |d-r|/|d|", f"{m['rel_error']:.4f}"), ("cosine(d, r)", f"{m['cosine']:.4f}"),
        ("energy in kept entries", f"{m['kept_energy'] * 100:.2f} % of |d|^2"),
        (f"{args.bits}-bit error on kept entries", f"{m['quant_rel_error']:.4f} (relative)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    keys = ["compression_ratio_fp32", "compression_ratio_bf16", "encode_mb_s", "decode_mb_s",
            "rel_error", "cosine", "quant_rel_error", "index_bits_per_value", "value_bits_per_value"]
    print(" ".join(f"{k}={m[k]:.4g}" for k in keys))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = SubnetConfig(codec_chunk=args.chunk, codec_topk=args.topk, codec_bits=args.bits).codec_config()
    delta, source, first, last = pseudo_gradient(args)
    report(args, source, (first, last), measure(delta, cfg, args.repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
