"""Backend-specific fast paths for thread calls, one module per backend (benchmark B1).

- ``_asyncio``: concur's own worker pool for asyncio, one shared queue per event loop.
- ``_trio``: ``trio.to_thread.run_sync`` called directly, the thread claimed for anyio.

Both keep anyio's worker-thread contract (``anyio.from_thread`` works inside) and concur's
semantics (hard cap, handoff, cancellation); any other backend uses
``anyio.to_thread.run_sync``.
"""
