"""How a public module shows its names, written once: under the public module's name (so
tracebacks, ``repr`` and the docs say ``concur.TaskGroup``, not
``concur._core.taskgroup.TaskGroup``), and imported when first used where that keeps
``import concur`` light."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_attributes", "publish", "publish_all"]


def publish(value: object, module: str) -> None:
    """Show *value* (a class or function of a private ``concur._*`` module) as *module*'s."""
    if getattr(value, "__module__", "").startswith("concur._"):
        with contextlib.suppress(AttributeError, TypeError):
            value.__module__ = module


def publish_all(namespace: Mapping[str, object], names: Iterable[str], module: str) -> None:
    """:func:`publish` each of *names* found in *namespace* (the module's globals)."""
    for name in names:
        if name in namespace:
            publish(namespace[name], module)


def lazy_attributes(
    namespace: MutableMapping[str, Any], module: str, table: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` for the names in *table* (name -> the
    module that defines it, relative to *module*; a name mapped to ``.name`` itself is a
    submodule). A name is imported on first access, published, and cached in *namespace*.
    """

    def __getattr__(name: str) -> object:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        source = importlib.import_module(where, module)
        value = source if where == f".{name}" else getattr(source, name)
        publish(value, module)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *table})

    return __getattr__, __dir__
