"""`swarmtrain export --hf DIR`: the subnet's model as a Hugging Face transformers directory.

    swarmtrain export --hf out/hf --model ~/.swarmtrain/validator/val-default-netuid1
    python -c "from transformers import AutoModelForCausalLM as M; M.from_pretrained('out/hf')"

``--model`` is a validator or miner state directory, a model state file (a validator's
``model.safetensors`` or ``checkpoints/*.safetensors``) or a checkpoint written by
``swarmtrain import``. The tokenizer is the subnet's (from the config stored with the model),
or ``--tokenizer``. See node/hf_interop.py for the layout.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

    from protocol.model import ModelConfig

NAME = "export"
HELP = "export the model as a Hugging Face transformers directory (LLaMA, safetensors, fast tokenizer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hf", type=Path, required=True, metavar="DIR", help="directory to write")
    parser.add_argument("--model", type=Path, required=True,
                        help="validator/miner state directory, model state file, or a 'swarmtrain import' checkpoint")
    parser.add_argument("--tokenizer", default=None,
                        help="'bytes' or a tokenizers JSON file (default: the subnet config's tokenizer)")


def run(args: argparse.Namespace) -> int:
    from node.hf_interop import HfInteropError
    from node.model_file import ModelFileError
    from node.model_state import ModelStateError
    from swarmtrain.commands._chainargs import fail

    try:
        state, cfg, tokenizer, window = load_model(args.model, args.tokenizer)
        from node.hf_interop import export_hf

        export_hf(state, cfg, args.hf, tokenizer=tokenizer, extra={"swarmtrain.window": str(window)})
    except (HfInteropError, ModelStateError, ModelFileError, OSError, ValueError) as err:
        return fail(str(err))
    print(f"exported {cfg.name} ({sum(v.numel() for v in state.values()):,} parameters, window {window}) "
          f"to {args.hf}: config.json, model.safetensors, tokenizer.json ({tokenizer})")
    print(f"load it with transformers.AutoModelForCausalLM.from_pretrained({str(args.hf)!r})")
    return 0


def model_file(path: Path) -> Path:
    """The model file inside a validator or miner state directory (or ``path`` itself)."""
    if path.is_file():
        return path
    if (path / "model.safetensors").is_file():  # a validator's state
        return path / "model.safetensors"
    from miner.state import MODEL_FILE, MinerStateStore

    latest = MinerStateStore(path).latest_dir() if path.is_dir() else None
    if latest is not None and (latest / MODEL_FILE).is_file():  # a miner's state
        return latest / MODEL_FILE
    raise ValueError(f"{path}: no model here; pass a validator or miner state directory or a model file")


def load_model(path: Path, tokenizer: str | None) -> tuple[dict[str, Tensor], ModelConfig, str, int | None]:
    """(weights by our names, ModelConfig, tokenizer to export, window or None)."""
    from safetensors import safe_open

    from node.model_file import load_model_file
    from node.model_state import FORMAT
    from protocol.model import subnet_model_config
    from protocol.subnet import SubnetConfig

    file = model_file(Path(path).expanduser())
    with safe_open(str(file), framework="pt", device="cpu") as f:
        meta = dict(f.metadata() or {})
    if meta.get("format") == FORMAT:  # a node's model state: weights + the subnet config
        subnet = SubnetConfig.model_validate_json(meta["subnet_config"])
        cfg = subnet_model_config(subnet)
        from node.model_state import ModelState

        model = ModelState.load(file, subnet)
        return model.params(), cfg, _tokenizer(tokenizer, subnet.tokenizer), model.window
    state, cfg, _extra = load_model_file(file)
    return state, cfg, tokenizer or "bytes", None


def _tokenizer(override: str | None, configured: str) -> str:
    choice = override or configured
    if choice.startswith(("http://", "https://")):
        raise ValueError(f"the subnet's tokenizer is at {choice}: download it and pass --tokenizer FILE")
    return choice
