#!/usr/bin/env python3
"""Can unsigned clients slow a validator's intake, and what does a window close hold in memory?

Two measurements, each side by side in one run:

* **intake under attack** — a real HTTPS validator intake (``validator.app`` + ``Intake``,
  TLS, btauth) on 127.0.0.1. A valid miner's upload is timed with the server quiet, then
  while another process holds ``--idle`` idle TLS connections (handshake done, nothing
  sent, reopened when closed) and ``--slow`` unsigned uploads (headers announcing a full
  body, then one byte a second, reconnecting when cut off). ``delay_s`` is the difference
  of the medians.
* **memory at window close** — ``--submissions`` submissions of the ``--preset`` model
  (default ``small``) are taken in as intake does (decode, summarise, keep the payload),
  then ``Evaluator.evaluate_window`` closes the window. Peak RSS (sampled every 5 ms from
  /proc) is reported before and during close, next to what the old design held: every
  submission's decoded update (measured per submission) plus one dense update per
  evaluated submission (measured the same way, after the close). The same close by the
  batched evaluator (the validator's default; θ_w's part prepared first) is measured too,
  and must give the same verdicts.

Usage:
    python scripts/bench_intake.py --quick
    python scripts/bench_intake.py --submissions 1024 --max-evaluations 64

Last line: ``valid_upload_s_quiet=… valid_upload_s_under_attack=… delay_s=… peak_rss_mb_close_small_256=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import math
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _bench_common as bc

bc.ensure_repo_on_path()

import torch  # noqa: E402
from bittensor.sp_core import Keypair  # noqa: E402

from chain.http_server import ServerLimits  # noqa: E402
from miner.submit import build_submission  # noqa: E402
from node.checkpoints import CheckpointStore  # noqa: E402
from node.model_state import ModelState  # noqa: E402
from node.signed_http import SignedClient  # noqa: E402
from node.tls import ensure_identity  # noqa: E402
from protocol import codec  # noqa: E402
from protocol.data import builtin_corpus  # noqa: E402
from protocol.messages import Submission, unpack_envelope  # noqa: E402
from protocol.similarity import SKETCH_DIM  # noqa: E402
from protocol.subnet import SubnetConfig  # noqa: E402
from protocol.windows import assigned_samples  # noqa: E402
from validator.app import HttpsServer, build_app  # noqa: E402
from validator.batched_eval import BatchedEvaluator  # noqa: E402
from validator.evaluate import Evaluator  # noqa: E402
from validator.intake import Intake, IntakeView  # noqa: E402
from validator.settings import ValidatorSettings  # noqa: E402
from validator.store import StoredSubmission, SubmissionStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


# ---------------------------------------------------------------------------- memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


class PeakRss:
    """Samples RSS every 5 ms in a thread while the ``with`` block runs."""

    def __enter__(self) -> PeakRss:
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def variants(cfg: SubnetConfig, state: ModelState, count: int) -> list[bytes]:
    """``count`` distinct payloads: one compressed update, each value's sign drawn per uid
    (same positions and magnitudes, so the same size; sketches unalike, so no copies)."""
    ccfg = cfg.codec_config()
    gen = torch.Generator().manual_seed(7)
    base = codec.compress({n: torch.randn(s, generator=gen) * 1e-3 for n, s in state.spec.items()}, ccfg)
    out = []
    for _ in range(count):
        flipped = {n: codec.SparseTensor(t.shape, t.indices,
                                         t.values * (torch.randint(0, 2, t.values.shape, generator=gen) * 2 - 1))
                   for n, t in base.items()}
        out.append(codec.encode(flipped, ccfg))
    return out


def close_memory(preset: str, count: int, max_evaluations: int) -> dict[str, Any]:
    """Intake then close of ``count`` submissions; RSS figures in MiB."""
    cfg = SubnetConfig(preset=preset, max_evaluations=max_evaluations, top_g=min(4, max_evaluations))
    ds = builtin_corpus()
    state = ModelState.initial(cfg)
    evaluator = Evaluator(cfg, ds)
    payloads = variants(cfg, state, count)
    dense_bytes = 4 * sum(math.prod(s) for s in state.spec.values())
    population = ds.num_samples(cfg.seq_len)
    before_intake = rss_bytes()
    t0 = time.perf_counter()
    subs, decoded_bytes = [], 0
    for uid, payload in enumerate(payloads):
        update = codec.decode(payload, state.spec, cfg.codec_config())  # what intake does (then drops)
        decoded_bytes = sum(t.indices.numel() * 8 + t.values.numel() * 4 for t in update.values())
        body = build_submission(cfg, window=0, uid=uid, hotkey=bc.fake_hotkey(uid), base_model_hash=state.hash(),
                                indices=assigned_samples(cfg.seed_bytes, 0, uid, cfg.samples_per_window, population),
                                payload=payload)
        header, received = unpack_envelope(body, Submission)
        subs.append(StoredSubmission.summarize(header, received, update, state.spec))
    intake_s = time.perf_counter() - t0
    held = rss_bytes()
    with PeakRss() as peak:
        t0 = time.perf_counter()
        result = evaluator.evaluate_window(state, subs, last_evaluated={}, secret=b"bench")
        close_s = time.perf_counter() - t0
    result.dense = {}  # the aggregate is not built here: free its top-G before the next close
    batched_delta, batched = batched_close(cfg, ds, state, subs)
    same = {u: (v.score, v.reason) for u, v in batched.verdicts.items()} == \
           {u: (v.score, v.reason) for u, v in result.verdicts.items()}
    payload_mean = statistics.fmean(len(p) for p in payloads)
    old_held = old_design_rss(subs, state.spec, cfg, max_evaluations)
    return {
        "preset": preset, "submissions": count, "max_evaluations": max_evaluations, "top_g": cfg.top_g,
        "parameters": dense_bytes // 4, "payload_kib": payload_mean / 1024,
        "decoded_update_mib": decoded_bytes / MIB, "dense_update_mib": dense_bytes / MIB,
        "held_per_submission_kib": (payload_mean + SKETCH_DIM * 8) / 1024,
        "rss_mb_before_intake": before_intake / MIB, "rss_mb_window_held": held / MIB,
        "peak_rss_mb_close": peak.peak / MIB, "close_delta_mb": (peak.peak - held) / MIB,
        "old_design_held_mb": old_held / MIB, "old_design_computed_mb": (count * decoded_bytes
                                                                          + max_evaluations * dense_bytes) / MIB,
        "intake_s": intake_s, "close_s": close_s,
        "evaluated": len(result.evaluations), "batched_close_delta_mb": batched_delta / MIB,
        "batched_same_verdicts": int(same),
    }


def batched_close(cfg: SubnetConfig, ds: Any, state: ModelState,
                  subs: Sequence[StoredSubmission]) -> tuple[int, Any]:
    """(RSS growth in bytes, result) of the same close by the validator's default
    ``BatchedEvaluator`` (θ_w's part prepared first, as while submissions arrive); freed
    heap is handed back first so the growth is its own."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    evaluator = BatchedEvaluator(cfg, ds)
    evaluator.prepare(state, subs, secret=b"bench")
    with PeakRss() as peak:
        result = evaluator.evaluate_window(state, subs, last_evaluated={}, secret=b"bench")
    return peak.peak - peak.start, result


def old_design_rss(subs: Sequence[StoredSubmission], spec: dict[str, tuple[int, ...]], cfg: SubnetConfig,
                   evaluated: int) -> int:
    """RSS growth (bytes) of what the previous design held at close, measured the same way:
    every submission's decoded update (kept from intake) plus one dense update per evaluated one."""
    with PeakRss() as peak:
        held = [codec.decode(s.payload, spec, cfg.codec_config()) for s in subs]
        dense = [codec.decompress(u, spec) for u in held[:evaluated]]
    del held, dense
    return peak.peak - peak.start


# ---------------------------------------------------------------------------- intake


async def start_intake(tmp: Path, miners: Sequence[Keypair], validator: Keypair,
                       max_connections: int) -> tuple[HttpsServer, Any, bytes]:
    """A real intake over HTTPS for the tiny preset; returns (server, cfg/state pair, fingerprint)."""
    cfg = SubnetConfig(preset="tiny")
    ds = builtin_corpus()
    state = ModelState.initial(cfg)
    view = IntakeView(open_window=0, ready=True, model_hash=state.hash(),
                      hotkeys={uid: kp.ss58_address for uid, kp in enumerate(miners)})
    settings = ValidatorSettings(netuid=cfg.netuid, state_dir=tmp, port=0)
    intake = Intake(view, SubmissionStore(), cfg, settings, self_hotkey=validator.ss58_address,
                    population=ds.num_samples(cfg.seq_len), spec=state.spec)
    app = build_app(intake, CheckpointStore(tmp / "ckpt"), status=dict, max_body_bytes=settings.max_body_bytes)
    server = await HttpsServer.start(app, ensure_identity(tmp / "tls"), "127.0.0.1", 0,
                                     ServerLimits(max_connections=max_connections,
                                                  keepalive_timeout_s=settings.keepalive_timeout_s))
    return server, (cfg, state, ds), ensure_identity(tmp / "tls").fingerprint.encode()


async def timed_uploads(server: HttpsServer, world: Any, fingerprint: str, miners: Sequence[Keypair],
                        uids: Sequence[int], validator: Keypair) -> list[float]:
    cfg, state, ds = world
    population = ds.num_samples(cfg.seq_len)
    gen = torch.Generator().manual_seed(3)
    times = []
    for uid in uids:
        payload = codec.encode(codec.compress({n: torch.randn(s, generator=gen) * 1e-3 for n, s in state.spec.items()},
                                              cfg.codec_config()), cfg.codec_config())
        body = build_submission(cfg, window=0, uid=uid, hotkey=miners[uid].ss58_address, base_model_hash=state.hash(),
                                indices=assigned_samples(cfg.seed_bytes, 0, uid, cfg.samples_per_window, population),
                                payload=payload)
        async with SignedClient(miners[uid], timeout=60) as client:
            t0 = time.perf_counter()
            status, answer = await client.post(f"https://127.0.0.1:{server.port}", "/submit", body,
                                               receiver_hotkey=validator.ss58_address, pinned_fingerprint=fingerprint)
            times.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"valid upload refused: {status} {answer[:200]!r}")
    return times


async def attack(port: int, idle: int, slow: int, seconds: float) -> None:
    """The attacker process: idle TLS connections and slow unsigned uploads, kept up."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    counts = {"opened": 0, "cut": 0}
    end = time.monotonic() + seconds

    async def hold_idle() -> None:
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                counts["opened"] += 1
                await asyncio.wait_for(reader.read(1), max(end - time.monotonic(), 0.1))
                counts["cut"] += 1
                writer.close()
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                await asyncio.sleep(0.2)

    async def trickle() -> None:
        head = (b"POST /submit HTTP/1.1\r\nHost: v\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: 33554432\r\n\r\n")
        while time.monotonic() < end:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
                counts["opened"] += 1
                writer.write(head)
                while time.monotonic() < end and not reader.at_eof():
                    writer.write(b"\0")
                    await writer.drain()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(reader.read(4096), 1.0)
                counts["cut"] += 1
                writer.close()
            except (OSError, ssl.SSLError):
                await asyncio.sleep(0.2)

    tasks = [asyncio.create_task(hold_idle()) for _ in range(idle)] + [asyncio.create_task(trickle()) for _ in range(slow)]
    await asyncio.sleep(2.0)
    print(f"attack-ready opened={counts['opened']}", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"attack-done opened={counts['opened']} cut={counts['cut']}", flush=True)


async def intake_under_attack(idle: int, slow: int, uploads: int, max_connections: int) -> dict[str, Any]:
    validator = Keypair.create_from_uri("//BenchValidator")
    miners = [Keypair.create_from_uri(f"//BenchMiner{i}") for i in range(2 * uploads + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        server, world, fp = await start_intake(Path(tmp), miners, validator, max_connections)
        fingerprint = fp.decode()
        try:
            await timed_uploads(server, world, fingerprint, miners, [2 * uploads], validator)  # warm-up
            quiet = await timed_uploads(server, world, fingerprint, miners, range(uploads), validator)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--attacker", str(server.port), "--idle", str(idle), "--slow", str(slow),
                "--attack-s", str(30 + 5 * uploads), stdout=subprocess.PIPE)
            assert proc.stdout is not None
            ready = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
            await asyncio.sleep(1.0)
            open_during = server.connection_stats()["open"]
            loaded = await timed_uploads(server, world, fingerprint, miners, range(uploads, 2 * uploads), validator)
            stats = server.connection_stats()
            proc.terminate()
            await proc.wait()
        finally:
            await server.stop()
    q, a = statistics.median(quiet), statistics.median(loaded)
    return {"idle": idle, "slow": slow, "uploads": uploads, "attacker": ready, "open_connections_during": open_during,
            "connection_stats": stats, "valid_upload_s_quiet": q, "valid_upload_s_under_attack": a,
            "valid_upload_s_under_attack_max": max(loaded), "delay_s": a - q}


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="256 submissions, 4 evaluated; 5 timed uploads")
    p.add_argument("--preset", default="small", help="model preset of the memory measurement")
    p.add_argument("--submissions", type=int, default=256)
    p.add_argument("--max-evaluations", type=int, default=16)
    p.add_argument("--idle", type=int, default=400, help="idle TLS connections of the attacker")
    p.add_argument("--slow", type=int, default=64, help="slow unsigned uploads of the attacker")
    p.add_argument("--uploads", type=int, default=9, help="valid uploads timed, quiet and under attack")
    p.add_argument("--max-connections", type=int, default=ValidatorSettings.model_fields["max_connections"].default,
                   help="the server's connection cap (below idle + slow: the cap closes idle ones)")
    p.add_argument("--skip-memory", action="store_true", help="only the intake measurement")
    p.add_argument("--attacker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--attack-s", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=bc.DEFAULT_OUT / "intake")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.attacker:
        asyncio.run(attack(args.attacker, args.idle, args.slow, args.attack_s))
        return 0
    torch.set_num_threads(1)
    if args.quick:
        args.max_evaluations, args.uploads = 4, 5
    net = asyncio.run(intake_under_attack(args.idle, args.slow, args.uploads, args.max_connections))
    print(bc.markdown_table(["valid upload", "median s"], [["quiet", net["valid_upload_s_quiet"]],
                                                          [f"{args.slow} slow unsigned + {args.idle} idle",
                                                           net["valid_upload_s_under_attack"]]]))
    print(f"attacker: {net['attacker']}; open connections during: {net['open_connections_during']}; "
          f"server: {net['connection_stats']}")
    if args.skip_memory:
        print(bc.summary_line({k: net[k] for k in ("valid_upload_s_quiet", "valid_upload_s_under_attack", "delay_s")}))
        return 0
    mem = close_memory(args.preset, args.submissions, args.max_evaluations)
    print(bc.markdown_table(["memory at close", "MiB"], [
        ["RSS before intake", mem["rss_mb_before_intake"]], ["RSS with the window held", mem["rss_mb_window_held"]],
        ["peak RSS during close", mem["peak_rss_mb_close"]], ["close: peak over held", mem["close_delta_mb"]],
        ["batched close (prepared): peak over its start", mem["batched_close_delta_mb"]],
        ["old design, measured: decoded updates + dense per evaluated", mem["old_design_held_mb"]],
        ["old design, computed from the sizes", mem["old_design_computed_mb"]]]))
    print(f"per submission held: {mem['held_per_submission_kib']:.0f} KiB (payload {mem['payload_kib']:.0f} KiB "
          f"+ sketch 32 KiB); decoded {mem['decoded_update_mib']:.2f} MiB, dense {mem['dense_update_mib']:.1f} MiB; "
          f"intake {mem['intake_s']:.1f}s, close {mem['close_s']:.1f}s ({mem['evaluated']} evaluated)")
    print(f"wrote {bc.write_json(args.out, 'intake.json', {'intake': net, 'close': mem})}")
    key = f"peak_rss_mb_close_{mem['preset']}_{mem['submissions']}"
    print(bc.summary_line({
        "valid_upload_s_quiet": net["valid_upload_s_quiet"],
        "valid_upload_s_under_attack": net["valid_upload_s_under_attack"], "delay_s": net["delay_s"],
        key: mem["peak_rss_mb_close"], "close_delta_mb": mem["close_delta_mb"],
        "old_design_mb": mem["old_design_held_mb"], "close_s": mem["close_s"],
        "batched_close_delta_mb": mem["batched_close_delta_mb"], "batched_same_verdicts": mem["batched_same_verdicts"],
    }))
    return 0 if mem["batched_same_verdicts"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
