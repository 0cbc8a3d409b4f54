"""Outputs mode at the validator: intake, verification by recomputation (honest passes, every
cheat earns 0), the student update every node reproduces, and one window of the real loop."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from bittensor.sp_core import Keypair

from miner.cheats import (
    constant_outputs,
    fake_tail,
    fewer_layers,
    low_precision,
    perturbed,
    random_outputs,
)
from node.logs import read_metrics
from node.model_state import ModelState
from node.signed_http import RequestRefused, SignedClient, parse_error
from node.teacher import Teacher
from protocol import outputs_codec
from protocol.distill import outputs_spec
from protocol.messages import Aggregate, Submission, data_digest, pack_envelope, unpack_envelope
from protocol.model import model_hash
from tests.outputs_fixtures import assigned, label, outputs_setup, tiny_teacher  # noqa: F401 (fixtures)
from validator.intake import Intake, IntakeView
from validator.service import Validator
from validator.settings import ValidatorSettings
from validator.store import SubmissionStore
from validator.student import StudentTrainer, build_student_update
from validator.verify_outputs import OutputsVerifier

from .helpers import FakeChain, fix_secret

VAL = Keypair.create_from_uri("//OutputsValidator")
MINERS = [Keypair.create_from_uri(f"//OutputsMiner{i}") for i in range(12)]
SECRET = b"outputs-test-secret".ljust(32, b".")


def body(cfg, uid: int, window: int, outputs, base_hash: str, ds, payload: bytes | None = None) -> bytes:
    payload = payload if payload is not None else outputs_codec.encode(outputs, outputs_spec(cfg))
    n = outputs.n_samples if outputs is not None else cfg.samples_per_window
    header = Submission(netuid=cfg.netuid, window=window, uid=uid, hotkey=MINERS[uid].ss58_address,
                        base_model_hash=base_hash, data_digest=data_digest(assigned(cfg, ds, window, uid)[:n]),
                        payload_sha256=hashlib.sha256(payload).hexdigest(), payload_len=len(payload), sent_at=1.0)
    return pack_envelope(header, payload)


def make_intake(cfg, ds, tmp_path, state: ModelState) -> Intake:
    view = IntakeView(open_window=state.window, ready=True, model_hash=state.hash(),
                      hotkeys={u: kp.ss58_address for u, kp in enumerate(MINERS)})
    return Intake(view, SubmissionStore(), cfg, ValidatorSettings(netuid=cfg.netuid, state_dir=tmp_path), self_hotkey=VAL.ss58_address,
                  population=ds.num_samples(cfg.seq_len), spec=state.spec)


def cheats(cfg, ds, teacher: Teacher, state: ModelState, window: int) -> dict[str, object]:
    """uid -> outputs of one cheat each (uids 2..10)."""
    c, rng = cfg, np.random.default_rng(0)
    n, shape = cfg.samples_per_window, (cfg.samples_per_window, c.seq_len, c.outputs_topk, c.vocab_size, c.outputs_value_bits)
    student = Teacher(state.clone_model().eval(), state.model.cfg, teacher.hash, teacher.device, teacher.dtype)
    own = assigned(cfg, ds, window, 0)
    return {
        "random": random_outputs(*shape, rng),
        "constant": constant_outputs(*shape),
        "student": label(student, cfg, ds, own),
        "layers": label(fewer_layers(teacher), cfg, ds, own),
        "lowbit": label(low_precision(teacher), cfg, ds, own),
        "other_uid": label(teacher, cfg, ds, assigned(cfg, ds, window, 1)),
        "stale": label(teacher, cfg, ds, assigned(cfg, ds, window + 1, 0)),
        "partial": fake_tail(label(teacher, cfg, ds, own), 0.25, c.vocab_size, c.outputs_value_bits, rng),
        "wrong_teacher": label(perturbed(teacher), cfg, ds, own),
    } | {"_n": n}  # type: ignore[return-value]


def test_honest_outputs_pass_and_every_cheat_earns_zero(outputs_setup, tmp_path):  # noqa: F811
    cfg, ds, teacher = outputs_setup
    state = ModelState.initial(cfg)
    intake = make_intake(cfg, ds, tmp_path, state)
    honest = label(teacher, cfg, ds, assigned(cfg, ds, 0, 1))
    partial_n = label(teacher, cfg, ds, assigned(cfg, ds, 0, 11)[:10])  # 10 of its 16 samples
    subs = [intake.admit(body(cfg, 1, 0, honest, state.hash(), ds), MINERS[1].ss58_address),
            intake.admit(body(cfg, 11, 0, partial_n, state.hash(), ds), MINERS[11].ss58_address)]
    named = {k: v for k, v in cheats(cfg, ds, teacher, state, 0).items() if k != "_n"}
    for uid, outputs in enumerate(named.values(), start=2):  # a cheat sends for its own uid
        subs.append(intake.admit(body(cfg, uid, 0, outputs, state.hash(), ds), MINERS[uid].ss58_address))
    result = OutputsVerifier(cfg, ds, teacher).verify_window(state, subs, last_evaluated={}, secret=SECRET)
    verdicts = {u: (v.score, v.reason) for u, v in result.verdicts.items()}
    assert verdicts[1] == (1.0, "ok") and result.checks[1].failed == 0
    assert verdicts[11] == (10 / 16, "ok")  # paid for the positions delivered
    for uid, name in enumerate(named, start=2):
        assert verdicts[uid] == (0.0, "mismatch"), (name, result.checks[uid])
    assert set(result.accepted) == {1, 11}
    check = result.checks[1]
    assert check.checks == cfg.outputs_spot_checks and check.tokens < honest.positions  # cheaper than labelling


def test_intake_refuses_malformed_outputs(outputs_setup, tmp_path):  # noqa: F811
    cfg, ds, teacher = outputs_setup
    state = ModelState.initial(cfg)
    intake = make_intake(cfg, ds, tmp_path, state)
    honest = label(teacher, cfg, ds, assigned(cfg, ds, 0, 1))
    good = outputs_codec.encode(honest, outputs_spec(cfg))
    other_teacher = outputs_codec.encode(honest, outputs_spec(cfg.model_copy(update={"teacher_hash": "00" * 32})))
    for payload, code in ((other_teacher, "invalid_payload"), (good[:-1], "invalid_payload"),
                          (b"\0" * len(good), "invalid_payload")):
        with pytest.raises(RequestRefused) as refused:
            intake.admit(body(cfg, 1, 0, honest, state.hash(), ds, payload), MINERS[1].ss58_address)
        assert refused.value.code == code
    wrong_n = body(cfg, 1, 0, honest.head(5), state.hash(), ds)  # digest of 5 samples, payload of 16
    header, _ = unpack_envelope(wrong_n, Submission)
    mixed = pack_envelope(header.model_copy(update={"payload_sha256": hashlib.sha256(good).hexdigest(),
                                                     "payload_len": len(good)}), good)
    with pytest.raises(RequestRefused) as refused:
        intake.admit(mixed, MINERS[1].ss58_address)
    assert refused.value.code == "wrong_data_digest"


def test_student_update_is_reproduced_and_lowers_the_distillation_loss(outputs_setup):  # noqa: F811
    cfg, ds, teacher = outputs_setup
    state = ModelState.initial(cfg)
    accepted = {u: (assigned(cfg, ds, 0, u), label(teacher, cfg, ds, assigned(cfg, ds, 0, u))) for u in (1, 2)}
    trainer = StudentTrainer.for_subnet(cfg)
    hotkeys = {u: MINERS[u].ss58_address for u in (1, 2)}
    header, payload, figures = build_student_update(state, accepted, hotkeys, cfg, trainer, ds)
    assert [c.uid for c in header.contributors] == [1, 2] and figures["steps"] == 4
    assert figures["loss_last"] < figures["loss_first"]
    follower = ModelState.initial(cfg)
    assert follower.apply_aggregate(header, payload) == header.next_model_hash != model_hash(state.model)
    empty, empty_payload, _ = build_student_update(state, {}, hotkeys, cfg, trainer, ds)
    assert empty.contributors == () and empty_payload == b"" and empty.next_model_hash == state.hash()


async def _post(v: Validator, uid: int, data: bytes) -> tuple[int, str]:
    async with SignedClient(MINERS[uid], timeout=10) as client:
        status, resp = await client.post(f"https://127.0.0.1:{v.server.port}", "/submit", data,
                                         receiver_hotkey=VAL.ss58_address, pinned_fingerprint=v.state.identity.fingerprint)
    return status, parse_error(resp)[0] if status != 200 else "accepted"


async def test_validator_loop_closes_an_outputs_window(outputs_setup, tmp_path):  # noqa: F811
    cfg, ds, teacher = outputs_setup
    chain = FakeChain(cfg.netuid, [VAL.ss58_address] + [m.ss58_address for m in MINERS[1:4]], [100.0, 0, 0, 0], tempo=5)
    fix_secret(tmp_path / "v", SECRET)
    v = Validator(chain, VAL, cfg, ValidatorSettings(netuid=cfg.netuid, state_dir=tmp_path / "v", port=0, poll_interval_s=0.05), ds,
                  hotkey=VAL.ss58_address, teacher=teacher)
    follower = ModelState.initial(cfg)
    await v.start()
    try:
        assert v.status()["task"] == "outputs"
        base = v.state.model.hash()
        honest = label(teacher, cfg, ds, assigned(cfg, ds, 0, 1))
        rng = np.random.default_rng(1)
        junk = random_outputs(cfg.samples_per_window, cfg.seq_len, cfg.outputs_topk, cfg.vocab_size, cfg.outputs_value_bits, rng)
        assert await _post(v, 1, body(cfg, 1, 0, honest, base, ds)) == (200, "accepted")
        assert await _post(v, 2, body(cfg, 2, 0, junk, base, ds)) == (200, "accepted")
        bad = body(cfg, 3, 0, honest, base, ds, payload=b"STOU" + b"\0" * 40)
        assert await _post(v, 3, bad) == (422, "invalid_payload")
        chain.block_now = cfg.blocks_per_window
        await v.tick()
        record = read_metrics(v.state.root / "metrics.jsonl")[-1]
        assert record["scores"] == {"1": 1.0, "2": 0.0} and record["contributors"] == [1]
        assert record["verdicts"]["2"]["reason"] == "mismatch" and record["checks"]["2"]["failed"] > 0
        assert record["student"]["steps"] == 2 and record["val_loss"] < record["val_loss_before"]
        envelope = v.state.store.get_aggregate(0)
        header, payload = unpack_envelope(envelope, Aggregate)
        assert follower.apply_aggregate(header, payload) == v.state.model.hash() == record["model_hash"]
        await v.set_weights()
        assert chain.weights and set(chain.weights[-1][1]) == {1}
    finally:
        await v.close()
