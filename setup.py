"""Distribution `swarmtrain`: a node for a decentralized training subnet."""

from pathlib import Path

from setuptools import setup

setup(
    name="swarmtrain",
    version="0.1.0",
    description="Miner, validator and local devnet for a Bittensor-style decentralized training subnet",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[
        "protocol",
        "chain",
        "chain.devnet",
        "miner",
        "validator",
        "node",
        "swarmtrain",
        "swarmtrain.commands",
        "swarmtrain.dataprep",
    ],
    package_data={"validator": ["static/*.html"]},  # the dashboard page

    install_requires=[
        "bittensor>=11.3,<12",
        "torch>=2.2",
        "aiohttp>=3.9",
        "pydantic>=2",
        "cryptography>=41",
        "numpy>=1.24",
        "safetensors>=0.4",
        "rich>=13",
        "prometheus-client>=0.17",  # /metrics of the validator and the miner
        "tomli>=1.1; python_version < '3.11'",  # --config settings files (tomllib from 3.11)
        "aiobotocore>=2.13",  # S3-compatible object storage for aggregates and checkpoints (node/storage.py)
    ],
    extras_require={
        "dev": [
            "pytest>=8",
            "pytest-asyncio>=0.23",
            "pytest-timeout>=2.2",
            "ruff>=0.5",
            "mypy>=1.10,<2",  # scripts/test.sh type-checks (config in pyproject.toml)
            "hypothesis>=6",
            "tokenizers>=0.15",  # the data tests train and load BPE tokenizers
            "transformers>=4.40",  # the Hugging Face export test loads the exported model
            "moto[server]>=5",  # a local S3-protocol server for the storage tests
        ],
        "s3-local": ["moto[server]>=5"],  # swarmtrain local --storage s3
        "plot": ["matplotlib>=3.7"],
        "hf": ["datasets>=2.14", "transformers>=4.40"],  # Hugging Face datasets; swarmtrain import --hf
        "data": ["tokenizers>=0.15"],  # BPE tokenizers: swarmtrain data train-tokenizer / prepare
    },
    entry_points={"console_scripts": ["swarmtrain=swarmtrain.cli:main"]},
)
