"""The validator's on-chain commitment: certificate fingerprint, criteria hash, config hash.

Stored as compact JSON (within the chain's 3 x 128-byte commitment), e.g.
``{"v":1,"fp":"<64 hex>","crit":"<64 hex>","cfg":"<64 hex>"}``. Miners read it from the
metagraph's commitments, pin TLS to ``fp`` and refuse to start when ``cfg`` (the subnet
config hash the validator runs) is not theirs.

Example:
    >>> c = ValidatorCommitment(fp="ab" * 32, crit="cd" * 32)
    >>> parse_commitment(c.to_str()) == c
    True
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

COMMITMENT_VERSION = 1
MAX_COMMITMENT_BYTES = 384  # the Commitments pallet: 3 Raw fields of 128 bytes

_HEX64 = r"^[0-9a-f]{64}$"


class ValidatorCommitment(BaseModel):
    """What a validator publishes next to its axon (``serve``) so miners can reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(COMMITMENT_VERSION, ge=1, le=COMMITMENT_VERSION)
    fp: str = Field(pattern=_HEX64, description="sha256 hex of the TLS certificate DER")
    crit: str = Field(pattern=r"^[0-9a-f]{1,64}$", description="hash of the published criteria")
    cfg: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="SubnetConfig.config_hash() it runs; empty: unknown")

    def to_str(self) -> str:
        fields = self.model_dump()
        if not fields["cfg"]:
            del fields["cfg"]  # the v1 shape, byte for byte, when the config hash is unknown
        text = json.dumps(fields, separators=(",", ":"))
        assert len(text.encode()) <= MAX_COMMITMENT_BYTES, "commitment grew past its bound"
        return text


def parse_commitment(text: str | None) -> ValidatorCommitment | None:
    """The commitment in ``text``, or None when it is absent, oversized or not ours."""
    if not text or len(text.encode("utf-8", "replace")) > MAX_COMMITMENT_BYTES:
        return None
    try:
        return ValidatorCommitment.model_validate_json(text)
    except ValidationError:
        return None
