"""concur: structured concurrency for components, on asyncio and trio alike.

Every component call runs inside a task group, a cancel scope and a capacity limiter:
async callables run on the event loop, sync ones in worker threads under a limiter that
truly caps them, with their arguments handed off safely, and the first failure cancels
the siblings.
"""

from typing import TYPE_CHECKING

from . import handoff as handoff
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
#: (relative: a concur module; absolute: anyio's, re-exported as they are)
_LAZY = {
    "ActionSkipped": "._strategies",
    "amap": "._map",
    "asyncify": "._interop",
    "Barrier": "._primitives",
    "CancelScope": "anyio",
    "CapacityLimiter": "anyio",
    "checkpoint": "anyio.lowlevel",
    "Concurrent": "._strategies",
    "Condition": "anyio",
    "create_memory_object_stream": "anyio",
    "Err": "._wait",
    "Event": "anyio",
    "fail_after": "anyio",
    "first_success": "._wait",
    "from_thread": "._interop",
    "FutureCancelled": "anyio",
    "gather": "._wait",
    "gather_settled": "._wait",
    "get_cancelled_exc_class": "anyio",
    "get_current_task": "anyio",
    "Job": "._workers",
    "JobStatus": "._workers",
    "jsonl": ".jsonl",
    "KeyedLimiter": "._primitives",
    "lifespan": "._signals",
    "limit": "._resilience",
    "Lock": "anyio",
    "map_async": "._map",
    "move_on_after": "anyio",
    "Ok": "._wait",
    "Outcome": "._wait",
    "Pipeline": "._strategies",
    "PoolStatistics": "._pools",
    "ProcessPool": "._pools",
    "race": "._wait",
    "retry": "._resilience",
    "RLock": "._primitives",
    "run": "._interop",
    "run_until_signal": "._signals",
    "Runner": "._runner",
    "Semaphore": "anyio",
    "Sequential": "._strategies",
    "Skipped": "._strategies",
    "streams": ".streams",
    "syncify": "._interop",
    "TaskCancelled": "anyio",
    "TaskFailed": "anyio",
    "TaskHandle": "anyio",
    "TaskNotFinished": "anyio",
    "ThreadPool": "._pools",
    "timeout": "._resilience",
    "Trigger": "._workers",
    "wait_future": "._interop",
    "WorkerPool": "._workers",
    "WorkerPoolStatistics": "._workers",
}

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
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

    from . import jsonl as jsonl
    from . import streams as streams
    from ._interop import asyncify as asyncify
    from ._interop import from_thread as from_thread
    from ._interop import run as run
    from ._interop import syncify as syncify
    from ._interop import wait_future as wait_future
    from ._map import amap as amap
    from ._map import map_async as map_async
    from ._pools import PoolStatistics as PoolStatistics
    from ._pools import ProcessPool as ProcessPool
    from ._pools import ThreadPool as ThreadPool
    from ._primitives import Barrier as Barrier
    from ._primitives import KeyedLimiter as KeyedLimiter
    from ._primitives import RLock as RLock
    from ._resilience import limit as limit
    from ._resilience import retry as retry
    from ._resilience import timeout as timeout
    from ._runner import Runner as Runner
    from ._signals import lifespan as lifespan
    from ._signals import run_until_signal as run_until_signal
    from ._strategies import ActionSkipped as ActionSkipped
    from ._strategies import Concurrent as Concurrent
    from ._strategies import Pipeline as Pipeline
    from ._strategies import Sequential as Sequential
    from ._strategies import Skipped as Skipped
    from ._wait import Err as Err
    from ._wait import Ok as Ok
    from ._wait import Outcome as Outcome
    from ._wait import first_success as first_success
    from ._wait import gather as gather
    from ._wait import gather_settled as gather_settled
    from ._wait import race as race
    from ._workers import Job as Job
    from ._workers import JobStatus as JobStatus
    from ._workers import Trigger as Trigger
    from ._workers import WorkerPool as WorkerPool
    from ._workers import WorkerPoolStatistics as WorkerPoolStatistics
else:
    from ._core.exports import lazy_attributes, publish_all

    __getattr__, __dir__ = lazy_attributes(globals(), __name__, _LAZY)
    publish_all(globals(), __all__, __name__)
    del lazy_attributes, publish_all


__version__ = "0.1.0"
