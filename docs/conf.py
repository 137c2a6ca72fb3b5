"""Sphinx configuration: nitpicky, no network (no intersphinx)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

project = "concur"
author = "the concur developers"
copyright = "2026, the concur developers"  # noqa: A001
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = True
html_theme = "alabaster"
exclude_patterns = ["_build", "examples"]

# Third-party and private types that appear in signatures: there is no intersphinx here.
nitpick_ignore_regex = [
    (r"py:.*", r"(anyio|trio|polars|pl|duckdb|pyarrow|pa|attrs|httpx|rich|ssl)(\..*)?"),
    (r"py:.*", r"(concur|components)\._.*"),
    (r"py:.*", r"(T|R|Ts|P|T_co|Item|Policy|Outcome|Rule|Cleanup|PosArgsT|PerRunLimiter|Counters)"),
    (r"py:mod", r"multiprocessing"),
    (r"py:.*", r"~?(P|T)|_asyncio\.Future"),  # a ParamSpec as rendered; asyncio.Future's home
    (r"py:.*", r"(typing|collections\.abc|contextvars|types|concurrent\.futures|asyncio|signal|contextlib)\..*"),
    (r"py:.*", r"(Awaitable|Callable|Coroutine|AsyncIterable|AsyncIterator|Iterable|Iterator)"),
    (r"py:.*", r"(Generator|AsyncGenerator|Mapping|Sequence|Any|Self|Literal|TracebackType)"),
    (r"py:.*", r"(CapacityLimiter|CancelScope|TaskHandle|Settings|Future|Context)"),
    (r"py:class", r"(ExceptionGroup|BaseExceptionGroup|Exception|BaseException)"),
    (r"py:.*", r"(DataFrame|Series|LazyFrame|DuckDBPyConnection|EventLoopToken)"),
    (r"py:.*", r"(Stat|Kind|OnError)"),  # components' Literal aliases
]
