"""The public surface of concur: what it exports, and what importing it costs."""

from __future__ import annotations

import subprocess
import sys

import concur


def test_all_is_a_sorted_tuple_of_real_names() -> None:
    """``concur.__all__`` is a sorted tuple and every name in it exists."""
    assert isinstance(concur.__all__, tuple)
    assert list(concur.__all__) == sorted(concur.__all__)
    for name in concur.__all__:
        assert hasattr(concur, name), name


def test_public_objects_say_they_are_concurs() -> None:
    """Classes and functions defined in private modules report ``__module__ == "concur"``."""
    for name in concur.__all__:
        module = getattr(getattr(concur, name), "__module__", "")
        assert not module.startswith("concur._"), (name, module)


def test_anyio_reexports_are_anyios_own() -> None:
    """The re-exported anyio names are the very same objects as anyio's."""
    import anyio

    for name in (
        "CancelScope",
        "move_on_after",
        "fail_after",
        "CapacityLimiter",
        "Lock",
        "Semaphore",
        "Event",
        "Condition",
        "TaskHandle",
        "get_cancelled_exc_class",
        "create_memory_object_stream",
        "TaskCancelled",
        "TaskFailed",
        "TaskNotFinished",
        "FutureCancelled",
        "get_current_task",
    ):
        assert getattr(concur, name) is getattr(anyio, name), name
    import anyio.lowlevel

    assert concur.checkpoint is anyio.lowlevel.checkpoint


def test_import_is_light() -> None:
    """``import concur`` imports none of polars, duckdb, pyarrow, trio, dask or rich."""
    heavy = ("polars", "duckdb", "pyarrow", "trio", "dask", "rich", "numpy", "httpx")
    code = (
        "import sys, concur, concur.handoff; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
