"""A pytest plugin that turns concur's backend fast paths off (used by test_fallback.py)."""

import concur._core.calls as calls

# None: "this backend has no fast path", so every thread call takes anyio's own path
calls._fast_paths.update(asyncio=None, trio=None)  # pyright: ignore[reportPrivateUsage]
