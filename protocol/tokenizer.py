"""The tokenizer a subnet names, and the model vocabulary that follows from it.

Two kinds:

* ``bytes`` — UTF-8 bytes are ids 0–255, ``BOS=256``, ``EOS=257``, ``PAD=258``; the model
  vocabulary is 264 (``protocol.data.VOCAB_SIZE``). Needs no file and no extra package.
* ``hf`` — a Hugging Face ``tokenizers`` JSON file (``tokenizers.Tokenizer.from_file``
  loads it), pinned by the sha256 of its bytes. Its size is the largest id in the model
  vocabulary and the added tokens, plus one; the model vocabulary is that size rounded
  up to a multiple of 64 (whole GPU tiles). The end-of-document token is the first of
  ``EOS_CANDIDATES`` the file defines (``swarmtrain data train-tokenizer`` writes
  ``<|endoftext|>`` = 0 and ``<|pad|>`` = 1).

This module reads the JSON with the standard library only: nodes check tokenizers and
vocabularies without the ``tokenizers`` package, which only the data commands need.

Example:
    >>> info = byte_tokenizer()
    >>> info.kind, info.eos_id, model_vocab_size(info)
    ('bytes', 257, 264)
    >>> round_vocab(50257)
    50304
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from protocol.data import EOS, VOCAB_SIZE, DataError

BYTES = "bytes"
VOCAB_MULTIPLE = 64
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>")
MAX_TOKENIZER_BYTES = 64 << 20  # a 256k-entry BPE file is ~20 MB


class TokenizerError(DataError):
    """A tokenizer file is unreadable, or is not the one the subnet or the dataset pins."""


class VocabularyError(DataError):
    """Token ids do not fit the model's vocabulary (the config's vocab_size)."""


@dataclass(frozen=True)
class TokenizerInfo:
    """What every node must agree on about a tokenizer: kind, file hash, size, end-of-document id."""

    kind: Literal["bytes", "hf"]
    sha256: str  # of the JSON file's bytes; "" for bytes
    vocab_size: int  # ids the tokenizer can emit are below this
    eos_id: int


def byte_tokenizer() -> TokenizerInfo:
    """The built-in byte tokenizer (ids 0–255, BOS 256, EOS 257, PAD 258)."""
    return TokenizerInfo(kind="bytes", sha256="", vocab_size=VOCAB_SIZE, eos_id=EOS)


def round_vocab(size: int) -> int:
    """``size`` rounded up to a multiple of ``VOCAB_MULTIPLE``."""
    return -(-size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def model_vocab_size(info: TokenizerInfo) -> int:
    """The model's vocabulary for a tokenizer: 264 for bytes, the size rounded up to 64 otherwise."""
    return VOCAB_SIZE if info.kind == BYTES else round_vocab(info.vocab_size)


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_tokenizer_json(data: bytes, where: str, eos: str | None = None) -> TokenizerInfo:
    """``TokenizerInfo`` of a ``tokenizers`` JSON file's bytes; ``TokenizerError`` names ``where``.

    ``eos`` picks the end-of-document token by its text; default: the first of
    ``EOS_CANDIDATES`` the file defines.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise TokenizerError(f"tokenizer {where} is not a JSON file ({e}); expected a Hugging Face "
                             "tokenizers file (tokenizer.json)") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("model"), dict):
        raise TokenizerError(f"tokenizer {where} has no 'model' object: not a Hugging Face tokenizers file")
    pieces = _pieces(doc, where)
    if not pieces:
        raise TokenizerError(f"tokenizer {where} has an empty vocabulary")
    eos_id = _eos_id(pieces, where, eos)
    return TokenizerInfo(kind="hf", sha256=file_sha256(data), vocab_size=max(pieces.values()) + 1, eos_id=eos_id)


def load_tokenizer_file(path: str | Path, eos: str | None = None) -> tuple[TokenizerInfo, bytes]:
    """(info, file bytes) of a local tokenizer JSON file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_TOKENIZER_BYTES:
            raise TokenizerError(f"tokenizer {path} is {size} bytes, over the {MAX_TOKENIZER_BYTES} limit")
        data = path.read_bytes()
    except OSError as e:
        raise TokenizerError(f"cannot read tokenizer {path}: {e.strerror or e}") from e
    return parse_tokenizer_json(data, str(path), eos), data


def _pieces(doc: dict[str, Any], where: str) -> dict[str, int]:
    """Token text -> id over the model vocabulary and the added tokens."""
    vocab = doc["model"].get("vocab")
    pieces: dict[str, int] = {}
    if isinstance(vocab, dict):  # BPE, WordPiece, WordLevel
        pieces.update({str(k): v for k, v in vocab.items()})
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], id = position
        pieces.update({str(entry[0]): i for i, entry in enumerate(vocab) if isinstance(entry, list) and entry})
    else:
        raise TokenizerError(f"tokenizer {where}: model has no vocabulary")
    for tok in doc.get("added_tokens") or []:
        if isinstance(tok, dict) and "content" in tok and "id" in tok:
            pieces[str(tok["content"])] = tok["id"]
    if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**32 for i in pieces.values()):
        raise TokenizerError(f"tokenizer {where}: token ids must be integers in [0, 2**32)")
    return pieces


def _eos_id(pieces: dict[str, int], where: str, eos: str | None) -> int:
    names = (eos,) if eos else EOS_CANDIDATES
    for name in names:
        if name in pieces:
            return pieces[name]
    raise TokenizerError(
        f"tokenizer {where} defines no end-of-document token ({', '.join(names)}): pass the one it "
        "uses with --eos, or train one with 'swarmtrain data train-tokenizer'"
    )


def check_config_tokenizer(info: TokenizerInfo, *, tokenizer: str, tokenizer_hash: str, vocab_size: int,
                           where: str) -> None:
    """Refuse data made with another tokenizer than the subnet's, or a vocabulary the model lacks.

    ``tokenizer``, ``tokenizer_hash`` and ``vocab_size`` are the subnet config's fields;
    ``where`` names the data (a manifest) whose tokenizer is ``info``.
    """
    if (tokenizer == BYTES) != (info.kind == BYTES):
        raise TokenizerError(
            f"{where} was tokenized with the {info.kind} tokenizer but the subnet config names "
            f"tokenizer {tokenizer!r}: prepare the data with the subnet's tokenizer "
            "('swarmtrain data prepare --tokenizer ...') or fix the config's tokenizer fields"
        )
    if info.kind != BYTES and tokenizer_hash and info.sha256 != tokenizer_hash:
        raise TokenizerError(
            f"{where} was tokenized with tokenizer {info.sha256}, but the subnet config pins "
            f"tokenizer_hash {tokenizer_hash} ({tokenizer}): re-run 'swarmtrain data prepare "
            "--tokenizer' with the subnet's tokenizer file, or point the config at this dataset's tokenizer"
        )
    want = model_vocab_size(info)
    if vocab_size != want:
        raise VocabularyError(
            f"the subnet config's vocab_size is {vocab_size}, but {where}'s tokenizer "
            f"({info.vocab_size} ids) makes the model vocabulary {want}: set vocab_size to {want} "
            "('swarmtrain data subnet-config' writes the tokenizer fields)"
        )


def check_local_tokenizer(path: Path, tokenizer_hash: str) -> None:
    """A tokenizer file the config names and this node holds must have the pinned hash."""
    data = path.read_bytes()
    if tokenizer_hash and file_sha256(data) != tokenizer_hash:
        raise TokenizerError(
            f"tokenizer file {path} has sha256 {file_sha256(data)}, but the subnet config pins "
            f"{tokenizer_hash}: replace it with the subnet's tokenizer file"
        )
