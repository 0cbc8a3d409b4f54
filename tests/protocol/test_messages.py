"""Wire messages: strict schemas, size bounds, the binary envelope and its failure modes."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol.messages import (
    MAX_PAYLOAD_BYTES,
    Aggregate,
    CheckpointManifest,
    Contributor,
    ErrorResponse,
    MessageError,
    Submission,
    SubmitAccepted,
    data_digest,
    pack_envelope,
    parse_message,
    unpack_envelope,
)

HOTKEY = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"


def submission(payload: bytes = b"update-bytes", **over: object) -> Submission:
    fields: dict[str, object] = dict(
        netuid=1, window=12, uid=3, hotkey=HOTKEY, base_model_hash="a" * 64,
        data_digest=data_digest([4, 5, 6]), payload_sha256=hashlib.sha256(payload).hexdigest(),
        payload_len=len(payload), criteria_hash=None, sent_at=1_700_000_000.5,
    )
    fields.update(over)
    return Submission(**fields)  # type: ignore[arg-type]


def aggregate(payload: bytes = b"agg") -> Aggregate:
    return Aggregate(
        netuid=1, window=12, contributors=[Contributor(uid=3, hotkey=HOTKEY, weight=0.5),
                                           {"uid": 4, "hotkey": HOTKEY, "weight": 0.5}],
        base_model_hash="a" * 64, next_model_hash="b" * 64,
        payload_sha256=hashlib.sha256(payload).hexdigest(), payload_len=len(payload), outer_lr=0.7,
    )


def envelope(head: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(head)) + head + payload


# --- round trips ---


@pytest.mark.parametrize("payload", [b"", b"x", bytes(range(256)) * 40])
def test_submission_envelope_round_trip(payload: bytes) -> None:
    hdr = submission(payload)
    body = pack_envelope(hdr, payload)
    assert struct.unpack(">I", body[:4])[0] == len(body) - 4 - len(payload)
    got, data = unpack_envelope(body, Submission)
    assert got == hdr and data == payload
    assert got.protocol_version == 1


def test_aggregate_envelope_round_trip_from_bytearray_and_memoryview() -> None:
    hdr = aggregate()
    body = pack_envelope(hdr, b"agg")
    for form in (bytearray(body), memoryview(body)):
        got, data = unpack_envelope(form, Aggregate)
        assert got == hdr and data == b"agg"
    assert got.contributors[1] == Contributor(uid=4, hotkey=HOTKEY, weight=0.5)


def test_json_messages_round_trip() -> None:
    msgs = [
        ErrorResponse(code="wrong_window", reason="window 3 is closed", detail="now 5"),
        SubmitAccepted(window=3, uid=9, payload_sha256="f" * 64),
        CheckpointManifest(netuid=2, window=10, model_hash="c" * 64,
                           config={"name": "tiny", "dim": 64, "rope_theta": 10000.0, "tied": True},
                           subnet_config_hash="d" * 64, file_sha256="e" * 64, file_size=123,
                           created_at=1.5),
    ]
    for msg in msgs:
        assert parse_message(msg.model_dump_json(), type(msg)) == msg
        assert parse_message(msg.model_dump_json().encode(), type(msg)) == msg
    assert json.loads(msgs[1].model_dump_json())["accepted"] is True


def test_data_digest_is_order_sensitive_little_endian_u64() -> None:
    expected = hashlib.sha256((1).to_bytes(8, "little") + (2).to_bytes(8, "little")).hexdigest()
    assert data_digest([1, 2]) == expected
    assert data_digest([2, 1]) != expected
    with pytest.raises(MessageError):
        data_digest([-1])


# --- schema strictness ---


@pytest.mark.parametrize(
    "over",
    [
        {"window": -1}, {"uid": 70_000}, {"netuid": "1"}, {"window": 1.0}, {"hotkey": "not an address"},
        {"hotkey": "5" * 200}, {"base_model_hash": "A" * 64}, {"data_digest": "ab"},
        {"payload_len": MAX_PAYLOAD_BYTES + 1}, {"sent_at": float("nan")}, {"sent_at": float("inf")},
        {"protocol_version": 2}, {"criteria_hash": "z" * 64}, {"surprise": 1},
    ],
)
def test_submission_rejects_bad_fields(over: dict) -> None:
    with pytest.raises(ValidationError):
        submission(**over)


def test_messages_are_frozen() -> None:
    hdr = submission()
    with pytest.raises(ValidationError):
        hdr.uid = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    "body",
    [
        {"code": "Bad Code", "reason": "x"},
        {"code": "ok", "reason": ""},
        {"code": "ok", "reason": "r" * 1025},
        {"code": "ok", "reason": "r", "extra": 1},
        {"code": "ok", "reason": "r", "protocol_version": 7},
    ],
)
def test_error_response_bounds(body: dict) -> None:
    with pytest.raises(MessageError, match="invalid ErrorResponse"):
        parse_message(json.dumps(body), ErrorResponse)


def test_aggregate_and_manifest_bounds() -> None:
    too_many = [{"uid": i % 65_000, "hotkey": HOTKEY, "weight": 0.0} for i in range(1025)]
    with pytest.raises(ValidationError):
        Aggregate(**{**aggregate().model_dump(), "contributors": too_many})
    with pytest.raises(ValidationError):
        Aggregate(**{**aggregate().model_dump(), "outer_lr": 0.0})
    with pytest.raises(ValidationError):
        Contributor(uid=1, hotkey=HOTKEY, weight=1.5)
    base = CheckpointManifest(netuid=1, window=1, model_hash="c" * 64, config={}, subnet_config_hash="d" * 64,
                              file_sha256="e" * 64, file_size=0, created_at=0.0).model_dump()
    for bad in ({"config": {f"k{i}": i for i in range(65)}}, {"config": {"nested": {"a": 1}}},
                {"file_size": -1}, {"window": 2**63}):
        with pytest.raises(ValidationError):
            CheckpointManifest(**{**base, **bad})


# --- envelope failure modes ---


def test_pack_rejects_mismatched_payload() -> None:
    with pytest.raises(MessageError, match="payload_len"):
        pack_envelope(submission(b"abc"), b"abcd")
    with pytest.raises(MessageError, match="sha256"):
        pack_envelope(submission(b"abc"), b"abd")
    with pytest.raises(MessageError, match="cannot head an envelope"):
        pack_envelope(ErrorResponse(code="x", reason="y"), b"")


def _valid_body(payload: bytes = b"payload") -> bytes:
    return pack_envelope(submission(payload), payload)


@pytest.mark.parametrize(
    "body, match",
    [
        (b"", "shorter than its length prefix"),
        (b"\x00\x00\x01", "shorter than its length prefix"),
        (struct.pack(">I", 10) + b"{}", "truncated"),
        (struct.pack(">I", 2**32 - 1) + b"{}", "exceeds the limit"),
        (envelope(b"not json"), "invalid Submission"),
        (envelope(b"\xff\xfe{}"), "invalid Submission"),
        (envelope(b"[1, 2]"), "invalid Submission"),
        (envelope(b"{}"), "invalid Submission"),
        (envelope(b"null"), "invalid Submission"),
    ],
)
def test_unpack_rejects_malformed(body: bytes, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        unpack_envelope(body, Submission)


def test_unpack_rejects_truncated_and_extended_payload() -> None:
    body = _valid_body()
    with pytest.raises(MessageError, match="payload_len=7 but the payload has 6"):
        unpack_envelope(body[:-1], Submission)
    with pytest.raises(MessageError, match="payload_len"):
        unpack_envelope(body + b"!", Submission)
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(MessageError, match="sha256"):
        unpack_envelope(tampered, Submission)
    # cut inside the header
    with pytest.raises(MessageError, match="truncated"):
        unpack_envelope(body[:20], Submission)


def test_unpack_enforces_caller_limits() -> None:
    body = _valid_body(b"x" * 100)
    with pytest.raises(MessageError, match="payload of 100 bytes exceeds the limit of 99"):
        unpack_envelope(body, Submission, max_payload_bytes=99)
    with pytest.raises(MessageError, match="header of .* exceeds the limit of 64"):
        unpack_envelope(body, Submission, max_header_bytes=64)


def test_unpack_rejects_wrong_schema_and_extra_fields() -> None:
    with pytest.raises(MessageError, match="invalid Aggregate"):
        unpack_envelope(_valid_body(), Aggregate)
    head = json.loads(submission(b"p").model_dump_json())
    head["bonus"] = "x"
    with pytest.raises(MessageError, match="bonus"):
        unpack_envelope(envelope(json.dumps(head).encode(), b"p"), Submission)
    head.pop("bonus")
    head["uid"] = "3"  # strict: no str -> int coercion
    with pytest.raises(MessageError, match="uid"):
        unpack_envelope(envelope(json.dumps(head).encode(), b"p"), Submission)


def test_unpack_rejects_non_bytes() -> None:
    with pytest.raises(MessageError, match="must be bytes"):
        unpack_envelope("text", Submission)  # type: ignore[arg-type]


def test_parse_message_size_limit() -> None:
    with pytest.raises(MessageError, match="exceeds the limit"):
        parse_message(b" " * 100, ErrorResponse, max_bytes=10)


# --- fuzz ---


@given(st.binary(max_size=512))
@settings(max_examples=300, deadline=None)
def test_unpack_random_bytes_only_raises_message_error(body: bytes) -> None:
    with pytest.raises(MessageError):
        unpack_envelope(body, Submission)


@given(head=st.binary(max_size=300), payload=st.binary(max_size=64), declared=st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_unpack_random_framing_only_raises_message_error(head: bytes, payload: bytes, declared: int) -> None:
    for body in (envelope(head, payload), struct.pack(">I", declared) + head + payload):
        with pytest.raises(MessageError):
            unpack_envelope(body, Aggregate)


@given(data=st.data())
@settings(max_examples=100, deadline=None)
def test_mutated_valid_envelope_never_leaks_other_errors(data: st.DataObject) -> None:
    body = bytearray(_valid_body(b"some payload bytes"))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(body) - 1))
        body[pos] = data.draw(st.integers(0, 255))
    try:
        hdr, payload = unpack_envelope(bytes(body), Submission)
    except MessageError:
        return
    # a mutation that still parses must still be self-consistent
    assert hashlib.sha256(payload).hexdigest() == hdr.payload_sha256


def test_docstring_examples() -> None:
    import doctest

    import protocol.messages

    assert doctest.testmod(protocol.messages).failed == 0
