"""A pytest plugin that turns concur's backend fast paths off (used by test_fallback.py)."""

import concur._backends._asyncio as asyncio_fast
import concur._calls as calls

asyncio_fast.FAST_PATH = False
calls._trio_fast_missing = True  # pyright: ignore[reportPrivateUsage]
