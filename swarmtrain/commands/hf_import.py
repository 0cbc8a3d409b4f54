"""`swarmtrain import --hf DIR --out FILE`: a Hugging Face LLaMA model as a swarmtrain checkpoint.

    swarmtrain import --hf path/to/llama --out teacher.safetensors

Reads ``config.json`` and the weights (safetensors, sharded or not, or ``pytorch_model.bin``)
of a LLaMA-architecture model saved by transformers, checks that our decoder computes the
same function (rotate-half RoPE, SwiGLU, RMSNorm, no biases), and writes our checkpoint format
(``node.model_file.save_model_file``: weights, ModelConfig, model hash). In Python:
``node.hf_interop.load_hf_causal_lm(dir) -> (Transformer, ModelConfig)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import"
HELP = "import a Hugging Face LLaMA model (e.g. a teacher) as a swarmtrain checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf", type=Path, required=True, metavar="DIR", help="transformers model directory")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write (.safetensors)")


def run(args: argparse.Namespace) -> int:
    from node.hf_interop import HfInteropError, load_hf_causal_lm
    from node.model_file import save_model_file
    from protocol.model import count_params
    from swarmtrain.commands._chainargs import fail

    try:
        model, cfg = load_hf_causal_lm(args.hf)
        digest = save_model_file(args.out, model, cfg, extra={"source": "hf", "path": str(args.hf)})
    except (HfInteropError, OSError, ValueError, KeyError) as err:
        return fail(f"{err}")
    print(f"imported {args.hf} ({count_params(model):,} parameters: dim {cfg.dim}, {cfg.n_layers} layers, "
          f"{cfg.n_heads} heads / {cfg.n_kv_heads} kv, vocab {cfg.vocab_size}) to {args.out}")
    print(f"model_hash={digest}")
    return 0
