"""The miner strategies of the incentives benchmark: honest work and the attack suite.

Each strategy is one uid. Those that train own a real ``InnerTrainer`` (AdamW state kept
across windows) and a real ``codec.ErrorFeedback``, exactly as ``miner.service.Miner``
does; the rest build their update from what an attacker can see (another uid's update,
the published aggregate, noise). Every strategy returns a ``SparseUpdate`` whose values
came from ``codec.compress`` (so ``codec.encode`` accepts it), or None to skip the window.

Groups (what the benchmark expects of each):

* ``honest``   — the reference: trains on its own assigned samples.
* ``legit``    — more work on its own data (the over-trainer): must earn at least as much.
* ``rescaled`` — honest work sent rescaled: pay must not change (neither up nor down).
* ``cheat``    — no honest work of its own this window: must earn (nearly) nothing.

Example:
    >>> world = World(cfg, dataset, state, rng_seed=0)
    >>> [s.name for s in build_suite(world, honest=4)][:5]
    ['honest-0', 'honest-1', 'honest-2', 'honest-3', 'over-trainer']
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from miner.trainer import InnerTrainer
from node.model_state import ModelState
from protocol import codec, windows
from protocol.codec import SparseTensor, SparseUpdate
from protocol.data import TokenDataset
from protocol.model import preset
from protocol.similarity import update_norm
from protocol.subnet import SubnetConfig

OTHER_DATA_OFFSET = 1000  # data-ignoring miners train on the slots of uid + this (nobody's)
END_SHARE = 0.2  # own-data-at-the-end: the share of inner steps (at least 1) on its own samples


@dataclass
class World:
    """What every strategy can see: the config, data, θ_w and this window's public facts."""

    cfg: SubnetConfig
    dataset: TokenDataset
    state: ModelState
    rng_seed: int
    windows: int = 20  # length of the run (the quitter stops halfway)
    sent: dict[int, SparseUpdate] = field(default_factory=dict)  # this window's updates so far
    last_aggregate: dict[str, Tensor] | None = None  # the last published aggregate (dense)

    @property
    def codec_cfg(self) -> codec.CodecConfig:
        return self.cfg.codec_config()

    def batches(self, window: int, data_uid: int) -> list[Tensor]:
        """The H (B, T+1) batches of ``data_uid``'s assignment in ``window``."""
        c = self.cfg
        population = self.dataset.num_samples(c.seq_len)
        idx = windows.assigned_samples(c.seed_bytes, window, data_uid, c.samples_per_window, population)
        return list(self.dataset.batch(idx, c.seq_len).split(c.batch_size))

    def honest_norm(self) -> float:
        """Median norm of this window's updates so far (the honest miners go first)."""
        norms = sorted(update_norm(u) for u in self.sent.values())
        return norms[len(norms) // 2] if norms else 1.0

    def generator(self, window: int, uid: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.rng_seed * 1_000_003 + window * 1009 + uid)


class Trainer:
    """One uid's inner AdamW and error feedback, as the real miner keeps them."""

    def __init__(self, world: World) -> None:
        c = world.cfg
        self.inner = InnerTrainer(preset(c.preset), lr=c.inner_lr, weight_decay=c.inner_weight_decay)
        self.ef = codec.ErrorFeedback(c.error_feedback_beta)

    def update(self, world: World, batches: list[Tensor]) -> SparseUpdate:
        result = self.inner.train(world.state.params(), batches)
        return self.ef.step(result.delta, world.codec_cfg)


def scaled(update: SparseUpdate, factor: float) -> SparseUpdate:
    """Every kept value times ``factor`` (still at most 2^(bits-1) magnitudes per tensor)."""
    return {k: SparseTensor(st.shape, st.indices, st.values * factor) for k, st in update.items()}


def compressed(world: World, dense: dict[str, Tensor]) -> SparseUpdate:
    """What a miner would send for ``dense``: the codec's top-k and quantization."""
    return codec.compress(dense, world.codec_cfg)


def dense_of(world: World, update: SparseUpdate) -> dict[str, Tensor]:
    return codec.decompress(update, world.state.spec)


def with_norm(world: World, dense: dict[str, Tensor], norm: float) -> dict[str, Tensor]:
    current = math.sqrt(sum(float(t.double().square().sum()) for t in dense.values()))
    return {k: t * (norm / current) for k, t in dense.items()} if current > 0 else dense


# A strategy: (world, window) -> the update to send, or None to send nothing.
Plan = Callable[[World, int], SparseUpdate | None]


@dataclass
class Strategy:
    """One uid's behaviour and what the benchmark expects of it."""

    uid: int
    name: str
    group: str  # honest | legit | rescaled | cheat
    plan: Plan


def honest(trainer: Trainer, uid: int) -> Plan:
    return lambda world, w: trainer.update(world, world.batches(w, uid))


def over_trainer(trainer: Trainer, uid: int) -> Plan:
    """Two passes over its own samples: twice the inner steps, all on its own data."""
    return lambda world, w: trainer.update(world, world.batches(w, uid) * 2)


def rescaled(trainer: Trainer, uid: int, factor: float) -> Plan:
    return lambda world, w: scaled(trainer.update(world, world.batches(w, uid)), factor)


def data_ignoring(trainer: Trainer, uid: int) -> Plan:
    """Honest training, but on samples nobody assigned to it."""
    return lambda world, w: trainer.update(world, world.batches(w, uid + OTHER_DATA_OFFSET))


def own_data_at_end(trainer: Trainer, uid: int) -> Plan:
    """Trains elsewhere, then finishes with a few steps (END_SHARE of H) on its own samples."""
    def plan(world: World, w: int) -> SparseUpdate:
        other, own = world.batches(w, uid + OTHER_DATA_OFFSET), world.batches(w, uid)
        end = max(1, round(END_SHARE * len(own)))
        return trainer.update(world, other[: len(other) - end] + own[:end])
    return plan


def copycat(victim: int) -> Plan:
    return lambda world, w: world.sent.get(victim)


def near_copy(victim: int, uid: int, cosine: float = 0.9) -> Plan:
    """The victim's update plus noise on its kept entries, at the given cosine."""
    def plan(world: World, w: int) -> SparseUpdate | None:
        src = world.sent.get(victim)
        if src is None:
            return None
        g, ratio = world.generator(w, uid), math.tan(math.acos(cosine))
        noisy = {}
        for k, st in src.items():
            noise = torch.randn(st.values.shape, generator=g)
            scale = ratio * float(st.values.norm()) / max(float(noise.norm()), 1e-12)
            noisy[k] = SparseTensor(st.shape, st.indices, st.values + noise * scale)
        return compressed(world, dense_of(world, noisy))
    return plan


def partial_copy(victim: int, uid: int, keep: float = 0.8) -> Plan:
    """A random ``keep`` share of the victim's kept entries."""
    def plan(world: World, w: int) -> SparseUpdate | None:
        src = world.sent.get(victim)
        if src is None:
            return None
        g, out = world.generator(w, uid), {}
        for k, st in src.items():
            mask = torch.rand(st.values.shape, generator=g) < keep
            out[k] = SparseTensor(st.shape, st.indices[mask], st.values[mask])
        return out
    return plan


def mixture(victims: tuple[int, int]) -> Plan:
    """The mean of two other uids' updates."""
    def plan(world: World, w: int) -> SparseUpdate | None:
        a, b = (world.sent.get(v) for v in victims)
        if a is None or b is None:
            return None
        da, db = dense_of(world, a), dense_of(world, b)
        return compressed(world, {k: 0.5 * (da[k] + db[k]) for k in da})
    return plan


def noise(uid: int, factor: float = 1.0) -> Plan:
    """A random update at ``factor`` × the honest norm."""
    def plan(world: World, w: int) -> SparseUpdate:
        g = world.generator(w, uid)
        dense = {k: torch.randn(shape, generator=g) for k, shape in world.state.spec.items()}
        return compressed(world, with_norm(world, dense, factor * world.honest_norm()))
    return plan


def zero() -> Plan:
    return lambda world, w: compressed(world, {k: torch.zeros(s) for k, s in world.state.spec.items()})


def stale_replay(trainer: Trainer, uid: int, fresh_windows: int = 2) -> Plan:
    """Trains honestly for ``fresh_windows`` windows, then replays those updates in turn."""
    kept: list[SparseUpdate] = []

    def plan(world: World, w: int) -> SparseUpdate:
        if w < fresh_windows:
            kept.append(trainer.update(world, world.batches(w, uid)))
            return kept[-1]
        return kept[w % len(kept)]
    return plan


def free_rider() -> Plan:
    """Sends the last published aggregate as its own update."""
    def plan(world: World, w: int) -> SparseUpdate | None:
        if world.last_aggregate is None:
            return None
        return compressed(world, world.last_aggregate)
    return plan


def quitter(trainer: Trainer, uid: int) -> Plan:
    """Honest for the first half of the run, then sends nothing."""
    def plan(world: World, w: int) -> SparseUpdate | None:
        if w >= world.windows // 2:
            return None
        return trainer.update(world, world.batches(w, uid))
    return plan


def _rescaled_plan(world: World, factor: float, uid: int) -> Plan:
    return rescaled(Trainer(world), uid, factor)


def build_suite(world: World, honest_miners: int = 4, attacks: bool = True) -> list[Strategy]:
    """Honest miners first (uids 0..), then one uid per strategy of the attack suite."""
    suite = [Strategy(u, f"honest-{u}", "honest", honest(Trainer(world), u)) for u in range(honest_miners)]
    if not attacks:
        return suite
    uid = iter(range(honest_miners, 1000))

    def add(name: str, group: str, make: Callable[[int], Plan]) -> None:
        u = next(uid)
        suite.append(Strategy(u, name, group, make(u)))

    add("over-trainer", "legit", lambda u: over_trainer(Trainer(world), u))
    for factor in (1.5, 2.0, 10.0, 0.1):
        add(f"scaled-x{factor:g}", "rescaled", functools.partial(_rescaled_plan, world, factor))
    add("copycat", "cheat", lambda u: copycat(0))
    add("near-copy", "cheat", lambda u: near_copy(1, u))
    add("partial-copy", "cheat", lambda u: partial_copy(2, u))
    add("mixture", "cheat", lambda u: mixture((0, 3)))
    add("noise", "cheat", lambda u: noise(u))
    add("sign-flip", "cheat", lambda u: rescaled(Trainer(world), u, -1.0))
    add("zero", "cheat", lambda u: zero())
    add("near-zero", "cheat", lambda u: noise(u, 1e-6))
    add("stale-replay", "cheat", lambda u: stale_replay(Trainer(world), u))
    add("free-rider", "cheat", lambda u: free_rider())
    add("data-ignoring", "cheat", lambda u: data_ignoring(Trainer(world), u))
    add("own-data-at-end", "cheat", lambda u: own_data_at_end(Trainer(world), u))
    add("quitter", "cheat", lambda u: quitter(Trainer(world), u))
    return suite
