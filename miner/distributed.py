"""The miner's inner loop on several devices: torch.distributed, DDP or FSDP2.

Started by ``torchrun --nproc-per-node N -m swarmtrain miner ...`` (or ``swarmtrain miner
--gpus N``, which runs that). Rank 0 is the miner: it talks to the chain and validators,
holds θ_w, the error feedback and the state directory, and submits one update. The other
ranks only train: ``DistributedTrainer.serve`` waits for rank 0's commands.

Each window rank 0 broadcasts θ_w (DDP: every rank holds the whole model; FSDP2: each
rank is sent its shard) and then every global batch of the single-process miner; rank r
takes rows ``tensor_split(batch, world)[r]`` and weighs its loss by its share of the rows,
so the averaged gradient is the whole batch's mean gradient and the update is the one
the single-process miner computes (up to summation order). Δ is gathered on rank 0.

Example (every rank runs the same code; only rank 0 continues into the miner loop):
    >>> env = dist_env()
    >>> trainer = DistributedTrainer(model_cfg, lr=3e-3, device=init_distributed(env, "cuda"), env=env)
    >>> if env.rank != 0:
    ...     trainer.serve()                    # until rank 0 calls trainer.shutdown()
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from miner.settings import DIST_TIMEOUT_S
from miner.trainer import InnerTrainer, StepCallback, TrainResult, resolve_device
from protocol.model import Block

log = logging.getLogger("swarmtrain.miner.distributed")

@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int


def dist_env(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK), or None outside torchrun."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", env["RANK"])))


def init_distributed(env: DistEnv, device: str, timeout_s: float = DIST_TIMEOUT_S) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise ValueError(f"multi-process training runs on cuda or cpu, not {dev.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return dev


class DistributedTrainer(InnerTrainer):
    """``InnerTrainer`` over a process group: same ``train`` contract, rank 0 drives.

    ``shard=False``: DDP (every rank holds the model, gradients all-reduced). ``shard=True``:
    FSDP2 ``fully_shard`` per block and at the root (parameters, gradients and AdamW state
    divided across ranks), for a model that does not fit one device.
    """

    def __init__(self, *args: Any, env: DistEnv, shard: bool = False, **kwargs: Any) -> None:
        self.env, self.shard = env, shard
        self.rows_trained = 0  # this rank's share of the samples, summed over steps
        super().__init__(*args, **kwargs)

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.shard:
            from torch.distributed.fsdp import fully_shard

            for module in model.modules():
                if isinstance(module, Block):
                    fully_shard(module)
            fully_shard(model)
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ---- rank 0's side ------------------------------------------------------------------------

    def train(self, base: Mapping[str, Tensor], batches: Sequence[Tensor],
              on_step: StepCallback | None = None) -> TrainResult:
        """Rank 0: H inner steps over every rank; returns Δ (and per-step losses) like InnerTrainer."""
        started = time.monotonic()
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # the miner calls this from a worker thread
        shape = tuple(batches[0].shape) if batches else (0, 0)
        self._command("train", len(batches), shape, str(batches[0].dtype) if batches else "torch.int64")
        losses = self._train_collective(base, batches, on_step)
        delta = self._delta_collective(base)
        return TrainResult(delta=delta or {}, losses=losses, seconds=time.monotonic() - started)

    def optimizer_state(self) -> dict[str, Any]:
        """The AdamW state in the single-process format (state keyed by parameter index)."""
        if not self.shard:
            return self.optimizer.state_dict()  # identical on every rank
        self._command("optimizer_state")
        return self._optimizer_state_collective()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self._command("load_optimizer_state")
        self._load_optimizer_collective(state)

    def shutdown(self) -> None:
        """Release the other ranks (their ``serve`` returns)."""
        self._command("stop")

    def _command(self, name: str, *args: Any) -> None:
        message = [(name, args)]
        dist.broadcast_object_list(message, src=0)

    # ---- the other ranks ----------------------------------------------------------------------

    def serve(self) -> None:
        """Ranks > 0: run rank 0's commands until it sends ``stop``."""
        while True:
            message: list[Any] = [None]
            dist.broadcast_object_list(message, src=0)
            name, args = message[0]
            if name == "stop":
                return
            if name == "train":
                count, shape, dtype = args
                batches = [torch.empty(shape, dtype=getattr(torch, dtype.removeprefix("torch.")), device=self.device)
                           for _ in range(count)]
                self._train_collective(None, batches, None)
                self._delta_collective(None)
            elif name == "optimizer_state":
                self._optimizer_state_collective()
            elif name == "load_optimizer_state":
                self._load_optimizer_collective(None)
            else:
                raise RuntimeError(f"rank {self.env.rank}: unknown command {name!r} from rank 0")

    # ---- what every rank runs ----------------------------------------------------------------

    def _train_collective(self, base: Mapping[str, Tensor] | None, batches: Sequence[Tensor],
                          on_step: StepCallback | None) -> list[float]:
        self._broadcast_base(base)
        losses = []
        for i, batch in enumerate(batches, start=1):
            batch = batch.to(self.device).contiguous()  # NCCL sends device tensors only
            dist.broadcast(batch, src=0)
            losses.append(self.step(batch))
            if on_step is not None:
                on_step(i, len(batches), losses[-1])
        return losses

    def _broadcast_base(self, base: Mapping[str, Tensor] | None) -> None:
        """θ_w from rank 0 into every rank's parameters (FSDP2: each rank gets its shard)."""
        with torch.no_grad():
            for name, param in self.local.named_parameters():
                shape = tuple(param.shape)
                full = base[name].to(self.device, dtype=torch.float32) if base is not None else \
                    torch.empty(shape, device=self.device, dtype=torch.float32)
                if self.shard:
                    from torch.distributed.tensor import distribute_tensor

                    sharded: Any = param  # a DTensor under FSDP2
                    param.copy_(distribute_tensor(full, sharded.device_mesh, sharded.placements, src_data_rank=0))
                else:
                    dist.broadcast(full, src=0)
                    param.copy_(full)

    def step(self, batch: Tensor) -> float:
        """One AdamW step on this rank's rows of the global batch; returns the global mean loss."""
        if batch.shape[0] < self.env.world_size:
            raise ValueError(f"batch of {batch.shape[0]} rows cannot be split over {self.env.world_size} ranks")
        rows = torch.tensor_split(batch, self.env.world_size)[self.env.rank].to(self.device)
        self.rows_trained += rows.shape[0]
        share = self.env.world_size * rows.shape[0] / batch.shape[0]  # the ranks' gradients are averaged
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.accumulate(rows, share, self._no_sync)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        total = torch.tensor([loss / self.env.world_size], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total.item())

    def _no_sync(self) -> contextlib.AbstractContextManager[Any]:
        """Defer the gradient reduction to the last micro-batch."""
        if self.shard:
            return _fsdp_no_sync(self.model)
        return self.model.no_sync()  # type: ignore[operator]

    def _delta_collective(self, base: Mapping[str, Tensor] | None) -> dict[str, Tensor] | None:
        if not self.shard:
            return self.delta_from(base) if base is not None else None
        out: dict[str, Tensor] = {}
        for name, param in self.local.named_parameters():
            sharded: Any = param.detach()  # a DTensor under FSDP2
            full = sharded.full_tensor()  # all-gather: every rank takes part
            if base is not None:
                out[name] = base[name].to(torch.float32) - full.to("cpu", dtype=torch.float32)
        return out if base is not None else None

    def _optimizer_state_collective(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        fqn = get_optimizer_state_dict(self.model, self.optimizer,
                                       options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return to_indexed(fqn, [n for n, _ in self.local.named_parameters()]) if self.is_main else {}

    def _load_optimizer_collective(self, state: dict[str, Any] | None) -> None:
        if not self.shard:
            message = [state]
            dist.broadcast_object_list(message, src=0)
            loaded = message[0]
            assert loaded is not None, "rank 0 sends the optimizer state"
            self.optimizer.load_state_dict(loaded)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        names = [n for n, _ in self.local.named_parameters()]
        fqn = to_named(state, names) if state is not None else {}
        set_optimizer_state_dict(self.model, self.optimizer, fqn,
                                 options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module) -> Any:
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def to_indexed(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """An optimizer state keyed by parameter name (torch.distributed's full state dict) in
    ``Optimizer.state_dict()``'s format: parameters numbered in ``named_parameters`` order."""
    index = {n: i for i, n in enumerate(names)}
    groups = [{**g, "params": [index[p] for p in g["params"]]} for g in state["param_groups"]]
    return {"state": {index[n]: s for n, s in state["state"].items()}, "param_groups": groups}


def to_named(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of ``to_indexed``."""
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    return {"state": {names[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}


def torchrun_argv(argv: Sequence[str], gpus: int, python: str) -> list[str]:
    """``swarmtrain miner --gpus N ...`` as the torchrun command that starts N ranks of it."""
    rest, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--gpus":
            skip = i + 1 < len(argv)
            continue
        if arg.startswith("--gpus="):
            continue
        rest.append(arg)
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
            "-m", "swarmtrain", *rest]
