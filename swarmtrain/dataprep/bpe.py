"""``swarmtrain data train-tokenizer``: a byte-level BPE tokenizer trained on a corpus sample.

The sample is the first ``sample_bytes`` of text in the prepare command's chunk order
(the same seed shuffles both), so it is spread over the corpus and fixed by the
arguments. The tokenizer is GPT-2 style: byte-level pre-tokenizer and decoder (any
text round-trips, no unknown token), special tokens ``<|endoftext|>`` = 0 (ends every
document; the shards' EOS) and ``<|pad|>`` = 1. Training is deterministic: the same
sample and vocabulary size give the same JSON bytes, hence the same sha256.

Example:
    >>> result = train_tokenizer(("corpus/",), Path("tokenizer.json"), vocab_size=8192)
    >>> result.sha256, result.vocab_size
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from protocol.data import DataSourceError
from protocol.files import atomic_write
from protocol.tokenizer import TokenizerInfo, parse_tokenizer_json
from swarmtrain.dataprep.corpus import CHUNK_BYTES, hf_chunks, hf_sources, plan_chunks, read_chunk

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


@dataclass(frozen=True)
class TrainedTokenizer:
    info: TokenizerInfo
    sha256: str
    vocab_size: int
    sample_bytes: int
    seconds: float


def train_tokenizer(
    sources: Sequence[str], out: Path, *, vocab_size: int = 8192, sample_bytes: int = 64 << 20,
    seed: str = "swarmtrain", text_field: str = "text", min_frequency: int = 2,
) -> TrainedTokenizer:
    """Train on the corpus sample and write the tokenizer JSON to ``out``."""
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB} (256 bytes + special tokens), got {vocab_size}")
    tokenizers = _import_tokenizers()
    started = time.monotonic()
    sample = _Sample(sources, sample_bytes, seed, text_field)
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(sample.texts(), trainer)
    if sample.taken == 0:
        raise DataSourceError(f"no text found in {', '.join(sources)}")
    data = tok.to_str().encode("utf-8")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out), data)
    info = parse_tokenizer_json(data, str(out))
    return TrainedTokenizer(info, info.sha256, info.vocab_size, sample.taken, time.monotonic() - started)


class _Sample:
    """Documents of the corpus in chunk order until ``limit`` bytes of text."""

    def __init__(self, sources: Sequence[str], limit: int, seed: str, text_field: str) -> None:
        self.sources, self.limit, self.seed, self.text_field = sources, limit, seed, text_field
        self.taken = 0

    def texts(self) -> Iterator[str]:
        chunk_bytes = CHUNK_BYTES  # the pieces and order of 'prepare'
        chunks = plan_chunks(self.sources, chunk_bytes, self.seed)
        for source in [None, *hf_sources(self.sources)]:
            for chunk in chunks if source is None else hf_chunks(source, self.text_field, chunk_bytes):
                for _, text in read_chunk(chunk, self.text_field):
                    take = text[: max(0, self.limit - self.taken)]
                    self.taken += len(take.encode("utf-8"))
                    yield take
                    if self.taken >= self.limit:
                        return


def _import_tokenizers() -> ModuleType:
    """The ``tokenizers`` package with the submodules training uses (an optional extra)."""
    try:
        import tokenizers
        import tokenizers.decoders
        import tokenizers.models
        import tokenizers.pre_tokenizers
        import tokenizers.trainers
    except ImportError as e:
        raise DataSourceError("training a tokenizer needs the 'tokenizers' package: pip install 'swarmtrain[data]'") from e
    return tokenizers
