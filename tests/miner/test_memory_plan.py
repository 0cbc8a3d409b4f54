"""The memory plan's arithmetic against what autograd really keeps, and the trainer's memory
settings (bf16 autocast, activation checkpointing, gradient accumulation)."""

from __future__ import annotations

import pytest
import torch

from miner.memory_plan import (
    GIB,
    MemorySettings,
    activation_bytes,
    block_bytes_per_token,
    choose,
    head_saved_bytes_per_token,
    plan,
    render,
)
from miner.trainer import InnerTrainer, enable_activation_checkpointing
from protocol.model import ModelConfig, build_model, estimate_params, lm_loss, preset

# GQA (kv heads < heads) and a batch of 60 tokens, a count no weight dimension has
CFG = ModelConfig(name="t", dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden=352, max_seq_len=64)
BATCH, SEQ = 3, 20


def saved_bytes(model: torch.nn.Module, precision: str) -> tuple[int, int]:
    """(activation bytes, bf16 weight-copy bytes) autograd keeps for one forward + loss:
    distinct storages of the saved tensors, parameters left out."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    shapes = {tuple(p.shape) for p in model.parameters()} | {tuple(p.shape)[::-1] for p in model.parameters()}
    seen: dict[int, tuple[str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            cast = t.dim() == 2 and t.dtype == torch.bfloat16 and tuple(t.shape) in shapes
            seen[ptr] = ("cast" if cast else "act", t.untyped_storage().nbytes())
        return t

    batch = torch.randint(0, CFG.vocab_size, (BATCH, SEQ + 1), generator=torch.Generator().manual_seed(0))
    with (torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
          torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")):
        loss = lm_loss(model, batch)
    loss.backward()
    return (sum(n for kind, n in seen.values() if kind == "act"),
            sum(n for kind, n in seen.values() if kind == "cast"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_activation_count_matches_what_autograd_saves(precision):
    acts, casts = saved_bytes(build_model(CFG), precision)
    tokens = BATCH * SEQ
    predicted = tokens * (CFG.n_layers * block_bytes_per_token(CFG, precision) + head_saved_bytes_per_token(CFG, precision))
    # the rest is rotary tables and token ids: under 2 %
    assert predicted <= acts <= predicted * 1.02, (acts, predicted)
    linear_params = estimate_params(CFG) - CFG.vocab_size * CFG.dim - (2 * CFG.n_layers + 1) * CFG.dim
    assert casts == (2 * linear_params if precision == "bf16" else 0)


def test_checkpointing_keeps_only_each_blocks_input():
    model = build_model(CFG)
    enable_activation_checkpointing(model)
    acts, _ = saved_bytes(model, "fp32")
    tokens = BATCH * SEQ
    predicted = tokens * (CFG.n_layers * 4 * CFG.dim + head_saved_bytes_per_token(CFG, "fp32"))
    assert predicted <= acts <= predicted * 1.05, (acts, predicted)
    # the plan adds one block recomputed at a time on top
    assert activation_bytes(CFG, tokens, "fp32", True) > predicted


def test_1b_fits_a_24_gib_gpu_with_the_default_settings():
    chosen, options = choose(preset("1b"), MemorySettings(), batch_size=8, seq_len=2048, device_type="cuda",
                             device_bytes=24 * GIB)
    assert chosen.fits and chosen.precision == "bf16"
    assert chosen.weights + chosen.gradients + chosen.optimizer == 16 * estimate_params(preset("1b"))
    # fp32 with the whole batch at once is far over; the plan says so
    naive = plan(preset("1b"), batch_size=8, seq_len=2048, precision="fp32", checkpointing=False, micro_batch=8,
                 device_bytes=24 * GIB)
    assert not naive.fits and naive.total > 2 * 24 * GIB
    assert options[0].micro_batch == 8 and not options[0].fits  # the first choice tried, too big
    text = render(chosen, options, "test")
    assert "fits:" in text and "DOES NOT FIT" not in text.split("\n\n")[2]


def test_auto_on_cpu_is_the_plain_loop_and_sharding_divides_the_state():
    chosen, _ = choose(preset("tiny"), MemorySettings(), batch_size=8, seq_len=64, device_type="cpu",
                       device_bytes=GIB)
    assert (chosen.precision, chosen.checkpointing, chosen.micro_batch) == ("fp32", False, 8)
    one = plan(preset("1b"), batch_size=8, seq_len=2048, precision="bf16", checkpointing=True, micro_batch=1,
               device_bytes=24 * GIB)
    four = plan(preset("1b"), batch_size=8, seq_len=2048, precision="bf16", checkpointing=True, micro_batch=1,
                device_bytes=24 * GIB, ranks=4, shard=True)
    assert four.optimizer == one.optimizer // 4 and four.gathered > 0 and four.total < one.total
    with pytest.raises(ValueError, match="smaller than"):
        plan(preset("tiny"), batch_size=2, seq_len=8, precision="fp32", checkpointing=False, micro_batch=1,
             device_bytes=GIB, ranks=4)


def test_accumulation_and_checkpointing_give_the_same_step():
    batches = [torch.randint(0, 264, (8, 33), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    base = {n: p.detach().clone() for n, p in build_model(preset("tiny")).named_parameters()}
    plain = InnerTrainer(preset("tiny"), lr=3e-3).train(base, batches)
    for kwargs in ({"micro_batch": 3}, {"checkpointing": True, "micro_batch": 4}):
        other = InnerTrainer(preset("tiny"), lr=3e-3, **kwargs).train(base, batches)
        assert other.losses == pytest.approx(plain.losses, rel=1e-5)
        for name, d in plain.delta.items():
            assert float((other.delta[name] - d).norm() / d.norm()) < 1e-3, name  # Adam: sign noise where grads ~ 0


def test_bf16_autocast_trains():
    batches = [torch.randint(0, 264, (4, 33), generator=torch.Generator().manual_seed(i)) for i in range(4)]
    base = {n: p.detach().clone() for n, p in build_model(preset("tiny")).named_parameters()}
    fp32 = InnerTrainer(preset("tiny"), lr=3e-3).train(base, batches)
    bf16 = InnerTrainer(preset("tiny"), lr=3e-3, precision="bf16").train(base, batches)
    assert all(d.dtype == torch.float32 for d in bf16.delta.values())  # master weights stay fp32
    assert bf16.losses[0] == pytest.approx(fp32.losses[0], rel=2e-2)


def test_plan_command_reports_fit_and_exits_nonzero_when_short(capsys):
    from swarmtrain.cli import main

    assert main(["miner", "--plan", "--preset", "1b", "--seq-len", "2048", "--device", "cpu",
                 "--device-memory-gib", "24"]) == 0
    out = capsys.readouterr().out
    assert "plan_fits=1" in out and "fits:" in out and "| weights (fp32) | 3.61 |" in out
    assert main(["miner", "--plan", "--preset", "1b", "--seq-len", "2048", "--device", "cpu",
                 "--device-memory-gib", "12"]) == 1
    assert "DOES NOT FIT" in capsys.readouterr().out
