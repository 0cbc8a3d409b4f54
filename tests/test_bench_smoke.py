"""The benchmark scripts parse their arguments and run end to end on toy sizes.

Never asserts performance: only that the scripts work and their arithmetic is right.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(scope="module")
def bench():
    """Import a script module from scripts/ by name."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture
def toy_dataset():
    from protocol.data import TokenDataset

    rng = np.random.default_rng(0)
    return TokenDataset.from_arrays("toy", rng.integers(0, 256, 40_000).astype(np.uint16),
                                    rng.integers(0, 256, 4_000).astype(np.uint16))


@pytest.mark.parametrize("script", ["bench_convergence.py", "bench_window.py", "bench_validator.py", "bench_incentives.py",
                                    "bench_chaos.py", "bench_intake.py", "bench_gpu.py", "bench_storage.py"])
def test_help_runs_from_a_fresh_checkout(script: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPTS / script), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_summary_line_and_links(bench) -> None:
    bc = bench("_bench_common")
    assert bc.summary_line({"a": 1.23456, "b": 3, "c": "x"}) == "a=1.235 b=3 c=x"
    assert bc.transfer_seconds(1_250_000, 10) == pytest.approx(1.0)
    assert bc.human_bytes(1536) == "1.5 KiB"


def test_convergence_quick_args_and_equal_tokens(bench) -> None:
    conv = bench("bench_convergence")
    exp = conv.experiment_from(conv.parse_args(["--quick", "--miners", "3", "--inner-steps", "5"]))
    s = exp.subnet
    assert (exp.miners, s.inner_steps, s.preset) == (3, 5, "tiny")
    assert exp.tokens_per_window == 3 * 5 * s.batch_size * s.seq_len
    with pytest.raises(SystemExit):
        conv.main(["--variants", "adamw,nope"])


def test_convergence_tiny_run_in_process(bench, toy_dataset, monkeypatch, tmp_path: Path) -> None:
    conv = bench("bench_convergence")
    monkeypatch.setattr(conv, "builtin_corpus", lambda: toy_dataset)
    args = conv.parse_args(["--quick", "--windows", "2", "--miners", "2", "--inner-steps", "2",
                            "--batch-size", "2", "--seq-len", "16", "--val-samples", "8",
                            "--out", str(tmp_path)])
    record = conv.run(conv.experiment_from(args), conv.VARIANTS, tmp_path)
    summary = record["summary"]
    curves = record["curves"]
    # every variant evaluated at the same token counts: equal tokens by construction
    assert curves["adamw"]["tokens"] == curves["dense"]["tokens"] == curves["network"]["tokens"]
    assert curves["adamw"]["tokens"][-1] == 2 * 2 * 2 * 2 * 16
    ratio = curves["network"]["val_loss"][-1] / curves["adamw"]["val_loss"][-1]
    assert summary["loss_ratio_vs_adamw"] == pytest.approx(ratio)
    assert summary["compression_ratio_fp32"] > 1
    assert (tmp_path / "convergence.json").exists()


def test_window_breakdown_shares(bench) -> None:
    win = bench("bench_window")
    ok = {"event": "window", "trained": True, "submitted": True, "accepted": [0],
          "timings": {"train": 8.0, "compress": 0.5, "upload": 0.5, "wait": 0.5, "sync": 0.5}}
    recs = {"m1": [
        {**ok, "timings": {"train": 9.0, "compress": 1.0}},  # start-up window, skipped
        ok,
        {**ok, "submitted": False, "accepted": []},  # trained past the window's end
        {"event": "window", "trained": False, "timings": {"wait": 10.0}},
    ]}
    windows, late = win.window_records(recs, skip_first=1)
    assert (len(windows), late) == (1, 1)
    b = win.breakdown(windows)
    assert b["window_s"] == pytest.approx(10.0)
    assert b["overhead_share"] == pytest.approx(1.5 / 9.5)  # busy time excludes the idle wait
    assert b["idle_share"] == pytest.approx(0.05)
    assert b["protocol_s"] == pytest.approx(1.5)
    with pytest.raises(ValueError):
        win.breakdown([])


def test_bandwidth_tiny_uses_the_real_encoders(bench) -> None:
    from protocol import codec
    from protocol.aggregate_payload import encode_aggregate
    from protocol.model import build_model, param_spec, preset

    win = bench("bench_window")
    ccfg = codec.CodecConfig()
    row = win.preset_bandwidth("tiny", ccfg, top_g=2)
    model = build_model(preset("tiny"))
    spec = param_spec(model)
    assert row["dense_fp32"] == 4 * sum(p.numel() for p in model.parameters())
    import torch

    gen = torch.Generator().manual_seed(5)
    sparse = codec.compress({k: torch.randn(s, generator=gen) for k, s in spec.items()}, ccfg)
    real_upload = len(codec.encode(sparse, ccfg))
    assert abs(row["upload"] - real_upload) / real_upload < 0.02  # only Rice-code gaps vary
    one = codec.decompress(sparse, spec)
    assert row["download"] >= len(encode_aggregate(one, spec))  # a union of 2 is at least one


def test_validator_capacity_arithmetic(bench) -> None:
    val = bench("bench_validator")
    c = val.Costs(inner_step=0.1, verify=0.01, evaluate_per_miner=0.09, evaluate_fixed=0.5,
                  aggregate=0.3, val_loss=0.2)
    assert c.per_miner == pytest.approx(0.1)
    assert val.capacity(c, window_s=240.0, train_share=0.95) == 110  # (12 - 1) / 0.1
    assert val.capacity(c, window_s=10.0, train_share=0.95) == 0


def test_validator_measure_in_process(bench, toy_dataset) -> None:
    from protocol.subnet import SubnetConfig

    val = bench("bench_validator")
    cfg = SubnetConfig(seq_len=16, batch_size=2, inner_steps=2, eval_samples=2)
    import torch

    costs = val.measure(cfg, toy_dataset, k=2, repeats=1, device=torch.device("cpu"))
    assert costs.inner_step > 0 and costs.verify > 0 and costs.aggregate > 0


def test_incentives_run_pays_no_copy_and_reports_every_strategy(bench, toy_dataset) -> None:
    import torch

    inc = bench("bench_incentives")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only wait on each other on a busy machine
    try:
        _incentives_run(inc, toy_dataset)
    finally:
        torch.set_num_threads(threads)


def _incentives_run(inc, toy_dataset) -> None:
    from protocol.subnet import SubnetConfig

    cfg = SubnetConfig(seq_len=16, batch_size=2, inner_steps=3, eval_samples=8, max_evaluations=32,
                       codec_chunk=16, codec_topk=16)
    setup = inc.Setup(subnet=cfg, windows=3, seeds=1, honest=4, stakes=(500.0, 300.0), copier_stake=50.0, tempo=1)
    run = inc.run_seed(setup, 0, attacks=True, dataset=toy_dataset, log_every=100)
    names = {s.name for s in run.suite}
    assert {"copycat", "near-copy", "free-rider", "data-ignoring", "quitter", "over-trainer"} <= names
    by_name = {s.name: s.uid for s in run.suite}
    assert set(run.scores[by_name["copycat"]]) == {0.0}  # an exact copy never scores
    assert run.reasons[by_name["zero"]] == {"empty": 6}  # 3 windows x 2 validators
    assert len(run.incentive) == 3 and len(run.val_loss) == 3
    rows = inc.strategy_rows([run])
    assert [r.name for r in rows] == [s.name for s in run.suite]
    baseline = inc.run_seed(setup, 0, attacks=False, dataset=toy_dataset, log_every=100)
    line = inc.summary(rows, [run], [baseline])
    assert set(line) >= {"honest_share", "max_attack_ratio", "worst", "over_trainer_ratio",
                         "loss_with_attackers_vs_honest_only"}


def test_gpu_bench_arithmetic_and_no_gpu_exit(bench, capsys) -> None:
    gpu = bench("bench_gpu")
    from protocol.model import preset

    cfg = preset("1b")
    per_token = gpu.flops_per_token(cfg, 2048)
    # 6 FLOPs per matmul parameter (22 blocks + lm_head) and token, + 12 * layers * dim * seq
    assert per_token == pytest.approx(6 * 969_424_896 + 12 * 22 * 2048 * 2048, rel=1e-9)
    assert gpu.mfu(10_000.0, per_token, 989.0) == pytest.approx(10_000 * per_token / 989e12)
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3 H100 SXM") == 989.0
    assert gpu.peak_tflops("NVIDIA GeForce RTX 4090") == 165.0
    assert gpu.peak_tflops("Some Future GPU", 123.0) == 123.0
    assert gpu.peak_tflops("Some Future GPU") != gpu.peak_tflops("Some Future GPU")  # NaN: unknown
    args = gpu.parse_args(["--quick", "--presets", "150m"])
    assert (args.steps, args.miners, args.evaluate, args.presets, args.plan_memory_gib) == (3, 64, 32, "150m", 24.0)
    import torch

    if not torch.cuda.is_available():
        assert gpu.main(["--quick"]) == gpu.NO_GPU_STATUS
        assert "no CUDA GPU" in capsys.readouterr().err


def test_validator_throughput_in_process(bench, toy_dataset, tmp_path) -> None:
    """--miners: both evaluators on the same window agree and the report is written."""
    import torch

    from protocol.subnet import SubnetConfig

    val = bench("bench_validator")
    args = val.parse_args(["--miners", "4", "--evaluate", "2", "--honest", "1", "--repeats", "1",
                           "--out", str(tmp_path)])
    cfg = SubnetConfig(seq_len=16, batch_size=2, inner_steps=2, eval_samples=32)
    assert val.throughput(args, cfg, toy_dataset, torch.device("cpu")) == 0  # 0: same verdicts
    assert (tmp_path / "validator-throughput-tiny.json").exists()


def test_quick_modes_of_the_scale_benchmarks(bench) -> None:
    storage = bench("bench_storage")
    assert (storage.parse_args(["--quick"]).windows, storage.parse_args([]).windows) == (3, 5)
    with pytest.raises(SystemExit):
        storage.parse_args(["--storage", "validator,r2"])  # only validator and s3 are storages
    val = bench("bench_validator")
    quick = val.parse_args(["--miners", "256", "--quick"])
    assert (quick.evaluate, quick.repeats) == (val.QUICK_EVALUATE, 1)
    assert val.parse_args(["--miners", "256", "--quick", "--evaluate", "32"]).evaluate == 32
