"""The embedded devnet: a small local chain that speaks the bittensor SDK's ``Substrate`` protocol.

Modules, from the bottom up: ``wire`` (RPC and extrinsic formats), ``database`` (the
SQLite tables and their writes: ``ChainState``), ``params`` (config, hyperparameters),
``calls`` (accepted calls and their params), ``pallets`` (call dispatch with subtensor's
checks), ``epoch`` (Yuma per tempo), ``storage_queries`` / ``runtime_api`` (the SDK's reads,
in its decoded shapes), ``blockchain`` (``Devnet``: pool, blocks, epochs), ``server``
(aiohttp), ``cli`` (``python -m chain.devnet``), ``substrate`` (client-side
``DevnetSubstrate``), ``testing`` (``run_devnet``).
See docs/devnet.md.
"""
