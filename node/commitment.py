"""The validator's on-chain commitment: certificate fingerprint, criteria hash, config hash
(+ object store).

Stored as compact JSON (within the chain's 3 x 128-byte commitment), e.g.
``{"v":1,"fp":"<64 hex>","crit":"<64 hex>","cfg":"<64 hex>"}``. Miners read it from the
metagraph's commitments, pin TLS to ``fp`` and refuse to start when ``cfg`` (the subnet
config hash the validator runs) is not theirs. A validator that keeps its aggregates and
checkpoints in an S3-compatible store adds ``"st"``: the bucket's read location and
read-only credentials (``node.storage.StoreLocation``, short keys).

Example:
    >>> c = ValidatorCommitment(fp="ab" * 32, crit="cd" * 32)
    >>> parse_commitment(c.to_str()) == c
    True
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from node.storage import StoreLocation

COMMITMENT_VERSION = 1
MAX_COMMITMENT_BYTES = 384  # the Commitments pallet: 3 Raw fields of 128 bytes (chain.client)

_HEX64 = r"^[0-9a-f]{64}$"


class ValidatorCommitment(BaseModel):
    """What a validator publishes next to its axon (``serve``) so miners can reach it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = Field(COMMITMENT_VERSION, ge=1, le=COMMITMENT_VERSION)
    fp: str = Field(pattern=_HEX64, description="sha256 hex of the TLS certificate DER")
    crit: str = Field(pattern=r"^[0-9a-f]{1,64}$", description="hash of the published criteria")
    cfg: str = Field("", pattern=r"^([0-9a-f]{64})?$", description="SubnetConfig.config_hash() it runs; empty: unknown")
    st: StoreLocation | None = Field(None, description="where its aggregates and checkpoints can be read")

    def to_str(self) -> str:
        """Compact JSON; ValueError when an object-store location makes it too long for the chain."""
        fields = self.model_dump(by_alias=True, exclude_none=True)
        if not fields["cfg"]:
            del fields["cfg"]  # the v1 shape, byte for byte, when the config hash is unknown
        text = json.dumps(fields, separators=(",", ":"))
        if len(text.encode()) > MAX_COMMITMENT_BYTES:
            raise ValueError(
                f"the commitment is {len(text.encode())} bytes, the chain keeps {MAX_COMMITMENT_BYTES}: "
                "shorten the S3 endpoint, bucket, prefix or region (R2 takes the default region), or "
                "publish a public bucket without read keys")
        return text


def parse_commitment(text: str | None) -> ValidatorCommitment | None:
    """The commitment in ``text``, or None when it is absent, oversized or not ours."""
    if not text or len(text.encode("utf-8", "replace")) > MAX_COMMITMENT_BYTES:
        return None
    try:
        return ValidatorCommitment.model_validate_json(text)
    except ValidationError:
        return None
