"""swarmtrain: command-line entry points for the decentralized training node."""

__version__ = "0.1.0"
