"""One module per `swarmtrain` subcommand.

Each module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Heavy imports (torch, the SDK)
belong inside ``run`` so that ``swarmtrain --help`` stays fast.
"""
