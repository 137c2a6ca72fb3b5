"""Backend-specific fast paths, one module per backend, each behind a benchmark.

Only ``_asyncio`` exists: concur's own thread pool for asyncio (benchmark B1). trio's
``to_thread.run_sync`` is already within budget, so trio uses anyio's path.
"""
