"""concur: structured concurrency for components, on asyncio and trio alike.

Every component call runs inside a task group, a cancel scope and a capacity limiter:
async callables run on the event loop, sync ones in worker threads under a limiter that
truly caps them, with their arguments handed off safely, and the first failure cancels
the siblings.
"""

import contextlib
from typing import TYPE_CHECKING

from anyio import CancelScope as CancelScope
from anyio import CapacityLimiter as CapacityLimiter
from anyio import Condition as Condition
from anyio import Event as Event
from anyio import FutureCancelled as FutureCancelled
from anyio import Lock as Lock
from anyio import Semaphore as Semaphore
from anyio import TaskCancelled as TaskCancelled
from anyio import TaskFailed as TaskFailed
from anyio import TaskHandle as TaskHandle
from anyio import TaskNotFinished as TaskNotFinished
from anyio import create_memory_object_stream as create_memory_object_stream
from anyio import fail_after as fail_after
from anyio import get_cancelled_exc_class as get_cancelled_exc_class
from anyio import get_current_task as get_current_task
from anyio import move_on_after as move_on_after
from anyio.lowlevel import checkpoint as checkpoint

from . import handoff as handoff
from . import streams as streams
from ._core import ConcurError as ConcurError
from ._core import Settings as Settings
from ._core import TaskGroup as TaskGroup
from ._core import UnsafeHandoffError as UnsafeHandoffError
from ._core import UnsafeHandoffWarning as UnsafeHandoffWarning
from ._core import call as call
from ._core import check_cancelled as check_cancelled
from ._core import collapse as collapse
from ._core import current_settings as current_settings
from ._core import interrupt_with as interrupt_with
from ._core import scope as scope
from ._core import to_thread as to_thread
from ._interop import asyncify as asyncify
from ._interop import from_thread as from_thread
from ._interop import run as run
from ._interop import syncify as syncify
from ._interop import wait_future as wait_future
from ._map import amap as amap
from ._map import map_async as map_async
from ._runner import Runner as Runner
from ._wait import Err as Err
from ._wait import Ok as Ok
from ._wait import Outcome as Outcome
from ._wait import first_success as first_success
from ._wait import gather as gather
from ._wait import gather_settled as gather_settled
from ._wait import race as race

__all__ = (
    "CancelScope",
    "CapacityLimiter",
    "ConcurError",
    "Condition",
    "Err",
    "Event",
    "FutureCancelled",
    "Lock",
    "Ok",
    "Outcome",
    "Runner",
    "Semaphore",
    "Settings",
    "TaskCancelled",
    "TaskFailed",
    "TaskGroup",
    "TaskHandle",
    "TaskNotFinished",
    "UnsafeHandoffError",
    "UnsafeHandoffWarning",
    "amap",
    "asyncify",
    "call",
    "check_cancelled",
    "checkpoint",
    "collapse",
    "create_memory_object_stream",
    "current_settings",
    "fail_after",
    "first_success",
    "from_thread",
    "gather",
    "gather_settled",
    "get_cancelled_exc_class",
    "get_current_task",
    "handoff",
    "interrupt_with",
    "map_async",
    "move_on_after",
    "race",
    "run",
    "scope",
    "streams",
    "syncify",
    "to_thread",
    "wait_future",
)

#: names imported when first used, so that ``import concur`` stays light: name -> module
_LAZY = {
    "ActionSkipped": "._strategies",
    "Barrier": "._primitives",
    "Concurrent": "._strategies",
    "Job": "._workers",
    "JobStatus": "._workers",
    "KeyedLimiter": "._primitives",
    "Pipeline": "._strategies",
    "PoolStatistics": "._pools",
    "ProcessPool": "._pools",
    "RLock": "._primitives",
    "Sequential": "._strategies",
    "Skipped": "._strategies",
    "ThreadPool": "._pools",
    "Trigger": "._workers",
    "WorkerPool": "._workers",
    "WorkerPoolStatistics": "._workers",
    "jsonl": ".jsonl",
    "lifespan": "._signals",
    "limit": "._resilience",
    "retry": "._resilience",
    "run_until_signal": "._signals",
    "timeout": "._resilience",
}

if not TYPE_CHECKING:  # type checkers see the imports above instead

    def __getattr__(name: str) -> object:
        import importlib

        where = _LAZY.get(name)
        if where is None:
            raise AttributeError(f"module 'concur' has no attribute {name!r}")
        module = importlib.import_module(where, __name__)
        value = module if where == f".{name}" else getattr(module, name)
        if getattr(value, "__module__", "").startswith("concur._"):
            with contextlib.suppress(AttributeError, TypeError):
                value.__module__ = __name__
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


__version__ = "0.1.0"


def _fix_module() -> None:
    # tracebacks and docs say concur.TaskGroup, not concur._taskgroup.TaskGroup
    for name in __all__:
        obj = globals()[name]
        if getattr(obj, "__module__", "").startswith("concur._"):
            with contextlib.suppress(AttributeError, TypeError):
                obj.__module__ = __name__


_fix_module()
del _fix_module
