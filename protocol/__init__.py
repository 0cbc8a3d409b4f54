"""What every node must agree on: windows, data, model, update codec, criteria, emission, messages.

Pure and deterministic; imports none of the other swarmtrain packages and opens no sockets.
Being the bottom layer, it also holds the runtime primitives every other layer shares:
``files`` (crash-safe writes), ``retry`` (backoff, deadlines, polling) and ``flags``
(command-line flags, env vars and TOML generated from a settings model: the devnet's own
entry point in ``chain`` uses it as the node and CLI commands do).
"""
