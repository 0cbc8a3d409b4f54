"""The embedded devnet: a small local chain that speaks the bittensor SDK's ``Substrate`` protocol.

Modules, from the bottom up: ``wire`` (RPC and extrinsic formats), ``state`` (SQLite),
``params`` (config, hyperparameters), ``calls`` (accepted calls and their params),
``pallets`` (call dispatch with subtensor's checks), ``epoch`` (Yuma per tempo),
``storage`` / ``runtime_api`` (reads), ``ledger`` (pool + blocks), ``server`` (aiohttp),
``substrate`` (client-side ``DevnetSubstrate``), ``testing`` (``run_devnet``).
See docs/devnet.md.
"""
