"""The handoff registry: what an argument becomes before it crosses into a worker thread.

A *rule* for a type is either a function ``fn(value) -> value_to_pass``, or a generator
function that yields the value to pass exactly once and whose code after the ``yield``
runs once the thread function has returned, whatever the outcome (like a pytest fixture).

Rules are looked up along the argument type's MRO, so they match subclasses. Results are
cached per type; registering a rule clears the cache. Rules for polars, DuckDB and pyarrow
are installed lazily, the first time a value whose class comes from one of those packages
is handed off, so ``import concur`` never imports them.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib
import inspect
import sys
import types
import warnings
from collections.abc import Callable, Generator, Iterator
from functools import partial
from typing import Any, Literal, TypeAlias, TypeVar, final

from .errors import UnsafeHandoffError, UnsafeHandoffWarning

__all__ = [
    "Policy",
    "handed",
    "register",
]

T = TypeVar("T")

Policy: TypeAlias = Literal["warn", "strict", "off"]
"""How values without a rule are treated: ``"warn"``, ``"strict"`` or ``"off"``."""

POLICIES: frozenset[str] = frozenset({"warn", "strict", "off"})

Rule: TypeAlias = Callable[[Any], Any]
Cleanup: TypeAlias = Generator[Any, None, None]
#: a rule's interrupt hook: called with the handed value when its call is cancelled
Interrupt: TypeAlias = Callable[[Any], object]
#: a hook bound to its value, ready to call: ``functools.partial(interrupt, handed)``
Hook: TypeAlias = Callable[[], object]


class _Kind(enum.Enum):
    SAFE = enum.auto()
    CONTAINER = enum.auto()
    TRANSFORM = enum.auto()
    GENERATOR = enum.auto()
    UNKNOWN = enum.auto()


_SAFE_TYPES: tuple[type, ...] = (
    type(None),
    type(Ellipsis),
    type(NotImplemented),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    enum.Enum,
    range,
    slice,
    # Code objects, not data: sharing a function or a class is how callbacks travel.
    types.FunctionType,
    types.BuiltinFunctionType,
    type,
)

#: immutable standard-library types, by module: a value of one exists only if its module
#: was imported, so they are looked up in ``sys.modules`` and ``import concur`` imports none
_SAFE_BY_MODULE: dict[str, tuple[str, ...]] = {
    "datetime": ("date", "time", "timedelta", "tzinfo"),
    "decimal": ("Decimal",),
    "fractions": ("Fraction",),
    "pathlib": ("PurePath",),
    "re": ("Pattern",),
    "uuid": ("UUID",),
}


def _safe_types() -> tuple[type, ...]:
    """The types whose values are immutable, among those of the modules imported now."""
    found = list(_SAFE_TYPES)
    for module_name, names in _SAFE_BY_MODULE.items():
        module = sys.modules.get(module_name)
        if module is not None:
            found.extend(getattr(module, name) for name in names)
    return tuple(found)


# type -> (kind, rule); rule is None unless kind is TRANSFORM or GENERATOR
_rules: dict[type, tuple[_Kind, Rule | None]] = {}
_cache: dict[type, tuple[_Kind, Rule | None]] = {}
# type -> the interrupt hook of its rule (looked up along the MRO with the rule)
_interrupts: dict[type, Interrupt] = {}
_lazy_loaders: dict[str, Callable[[], None]] = {}
_loaded: set[str] = set()


def register(
    tp: type[T], *, interrupt: Callable[[Any], object] | None = None
) -> Callable[[Callable[[T], Any]], Callable[[T], Any]]:
    """Register the handoff rule for values of type *tp* (and its subclasses).

    Use it as a decorator on either a function returning the value to pass to the thread
    (a copy, a clone, a read-only view)::

        @concur.handoff.register(MyBuffer)
        def _(buf: MyBuffer) -> MyBuffer:
            return buf.copy()

    or a generator function yielding it once; the code after the ``yield`` runs in the
    worker thread once the thread function has returned, whatever the outcome (or on the
    event loop, if the thread function never started)::

        @concur.handoff.register(Pool)
        def _(pool: Pool) -> Iterator[Connection]:
            conn = pool.acquire()
            try:
                yield conn
            finally:
                pool.release(conn)

    A later registration for the same type replaces the earlier one. Rules apply under the
    ``"warn"`` and ``"strict"`` policies; ``"off"`` passes every value as it is.

    **Interrupts.** *interrupt*, if given, is called with the handed value (what the rule
    passed to the thread) when the call is cancelled while its thread runs (fail-fast, a
    timeout, an outside cancellation, Ctrl-C through :func:`concur.run`), from the event
    loop's thread, at once and then every 100 ms until the thread function returns, so that
    the thread stops early: close a session, kill a subprocess, set a flag. It must be
    idempotent and must not block; an exception it raises is logged at WARNING on the
    ``concur`` logger and changes nothing. Once it has been called, what the thread then
    returns or raises is discarded and the caller gets its own cancellation. The built-in
    DuckDB rule interrupts the cursor it made (``cursor.interrupt()``)::

        @concur.handoff.register(Job, interrupt=lambda job: job.stop.set())
        def _(job: Job) -> Job:
            return job

    Args:
        tp: the class.
        interrupt: the interrupt hook, or ``None``.

    Raises:
        TypeError: *tp* is not a class, or the decorated object or *interrupt* is not
            callable.
    """
    if not isinstance(tp, type):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"handoff.register() takes a class, got {type(tp).__name__} {tp!r}: "
            "write @concur.handoff.register(MyType)"
        )
    if interrupt is not None and not callable(interrupt):
        raise TypeError(
            f"interrupt must be a function taking the handed value, got "
            f"{type(interrupt).__name__} {interrupt!r}"
        )

    def decorator(fn: Callable[[T], Any]) -> Callable[[T], Any]:
        if not callable(fn):
            raise TypeError(
                f"a handoff rule must be a function or a generator function, "
                f"got {type(fn).__name__}"
            )
        kind = _Kind.GENERATOR if inspect.isgeneratorfunction(fn) else _Kind.TRANSFORM
        _rules[tp] = (kind, fn)
        if interrupt is None:
            _interrupts.pop(tp, None)
        else:
            _interrupts[tp] = interrupt
        _cache.clear()
        _interrupt_cache.clear()
        return fn

    return decorator


@functools.cache
def _frozen_setattr(attr: Any) -> object:
    """The ``__setattr__`` that attrs gives its frozen classes."""
    probe: type = attr.make_class("_Probe", [], frozen=True, slots=True)
    return vars(probe)["__setattr__"]


def _is_frozen_slotted_attrs(tp: type) -> bool:
    attr: Any = sys.modules.get("attr")  # an attrs class exists only if attrs was imported
    if attr is None or not attr.has(tp):
        return False
    if tp.__setattr__ is not _frozen_setattr(attr):
        return False
    # slotted all the way down: no instance __dict__ anywhere in the hierarchy
    return all("__slots__" in vars(klass) for klass in tp.__mro__[:-1])


def _lookup(tp: type[Any]) -> tuple[_Kind, Rule | None]:
    try:
        return _cache[tp]
    except KeyError:
        pass
    mro: tuple[type[Any], ...] = tp.__mro__
    for klass in mro:
        root = klass.__module__.partition(".")[0]
        if root in _lazy_loaders and root not in _loaded:
            _loaded.add(root)
            _lazy_loaders[root]()
    found: tuple[_Kind, Rule | None] | None = None
    for klass in mro:
        if klass in _rules:
            found = _rules[klass]
            break
    if found is None:
        if issubclass(tp, _safe_types()):
            found = (_Kind.SAFE, None)
        elif issubclass(tp, (tuple, frozenset)):
            found = (_Kind.CONTAINER, None)
        elif _is_frozen_slotted_attrs(tp):
            found = (_Kind.SAFE, None)
        else:
            found = (_Kind.UNKNOWN, None)
    _cache[tp] = found
    return found


_interrupt_cache: dict[type, Interrupt | None] = {}


def _interrupt_of(tp: type[Any]) -> Interrupt | None:
    """The interrupt hook of the rule that handles *tp*, if it has one."""
    try:
        return _interrupt_cache[tp]
    except KeyError:
        pass
    found: Interrupt | None = None
    for klass in tp.__mro__:
        if klass in _rules:
            found = _interrupts.get(klass)
            break
    _interrupt_cache[tp] = found
    return found


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside concur."""
    frame: types.FrameType | None = sys._getframe(2)  # pyright: ignore[reportPrivateUsage]
    level = 3
    while frame is not None and frame.f_globals.get("__name__", "").startswith("concur"):
        frame = frame.f_back
        level += 1
    return level - 1


def _refuse(value: object, policy: Policy) -> None:
    tp = type(value)
    name = f"{tp.__module__}.{tp.__qualname__}"
    if policy == "strict":
        raise UnsafeHandoffError(
            f"a {name} is not known to be safe to share with a worker thread; pass a copy, "
            f"register a rule with @concur.handoff.register({tp.__qualname__}), "
            f'or use handoff="warn"'
        )
    warnings.warn(
        f"a {name} was passed to a worker thread as it is; it is not known to be "
        f"thread-safe: pass a copy, register a rule with "
        f'@concur.handoff.register({tp.__qualname__}), or use handoff="off" to silence this',
        UnsafeHandoffWarning,
        stacklevel=_user_stacklevel(),
    )


def _hand(value: object, policy: Policy, cleanups: list[Cleanup], hooks: list[Hook]) -> object:
    kind, rule = _lookup(type(value))
    if kind is _Kind.SAFE:
        return value
    if kind is _Kind.TRANSFORM:
        assert rule is not None
        handed = rule(value)
        if (interrupt := _interrupt_of(type(value))) is not None:
            hooks.append(partial(interrupt, handed))
        return handed
    if kind is _Kind.GENERATOR:
        assert rule is not None
        gen: Cleanup = rule(value)
        try:
            handed = next(gen)
        except StopIteration:
            raise RuntimeError(
                f"the handoff rule {rule!r} for {type(value).__qualname__} did not yield"
            ) from None
        cleanups.append(gen)
        if (interrupt := _interrupt_of(type(value))) is not None:
            hooks.append(partial(interrupt, handed))
        return handed
    if kind is _Kind.CONTAINER:
        items: Any = value
        if _FAST.issuperset(map(type, items)):
            return value  # the common case, a tuple of primitives: one C loop of type checks
        new = [_hand(item, policy, cleanups, hooks) for item in items]
        if all(a is b for a, b in zip(new, items, strict=True)):
            return value
        if isinstance(value, frozenset):
            return frozenset(new)
        make = getattr(type(value), "_make", None)
        rebuild: Any = make if make is not None else type(value)
        return rebuild(new)
    _refuse(value, policy)
    return value


_FAST = frozenset({int, float, str, bool, bytes, type(None)})


def hand_args(
    fn: Callable[..., Any], args: tuple[Any, ...], policy: Policy
) -> tuple[Callable[..., Any], tuple[Any, ...], list[Cleanup], list[Hook]]:
    """Hand off *args* (and the arguments stored in a partial *fn*) under *policy*.

    Returns the callable and arguments to use in the thread, the cleanups to run once the
    thread function has returned, and the interrupt hooks of the handed values. On error,
    cleanups already started are run.
    """
    cleanups: list[Cleanup] = []
    hooks: list[Hook] = []
    if policy == "off":
        return fn, args, cleanups, hooks
    try:
        if args and not all(type(a) in _FAST for a in args):
            args = tuple([_hand(a, policy, cleanups, hooks) for a in args])
        if isinstance(fn, partial):
            p_args = tuple([_hand(a, policy, cleanups, hooks) for a in fn.args])
            p_kw = {k: _hand(v, policy, cleanups, hooks) for k, v in fn.keywords.items()}
            func: Callable[..., Any] = fn.func
            fn = partial(func, *p_args, **p_kw)
    except BaseException:
        run_cleanups(cleanups)
        raise
    return fn, args, cleanups, hooks


@final
class handed:
    """Hand *args* off now, as a thread call does, for code that passes them on itself.

    For a helper of your own that runs a sync function elsewhere (an executor, a thread of
    its own): ``with concur.handoff.handed(frame, con) as (frame, cur):`` gives the values
    to pass (a polars frame's clone, a DuckDB connection's fresh cursor, ...); leaving the
    block runs their cleanups (the cursor is closed), whatever the outcome. *policy*
    defaults to the ambient one (see :func:`concur.scope`); under ``"warn"`` an unknown
    value passes as it is, with a warning.

    Raises:
        UnsafeHandoffError: a value is refused by the ``"strict"`` policy.
    """

    __slots__ = ("_cleanups", "args")

    def __init__(self, *args: Any, policy: Policy | None = None) -> None:
        if policy is None:
            from .settings import settings_var  # settings imports this module

            policy = settings_var.get().handoff
        elif policy not in POLICIES:
            raise ValueError(f'policy must be "warn", "strict" or "off", got {policy!r}')
        _fn, self.args, self._cleanups, _hooks = hand_args(_no_fn, args, policy)

    def __enter__(self) -> tuple[Any, ...]:
        return self.args

    def __exit__(self, *exc_info: object) -> None:
        run_cleanups(self._cleanups)


def _no_fn() -> None:  # pragma: no cover - never called: hand_args needs a callable
    pass


def run_cleanups(cleanups: list[Cleanup]) -> None:
    """Resume each cleanup generator past its ``yield``, last first.

    Every cleanup runs even if another fails; the first failure is re-raised at the end.
    """
    error: BaseException | None = None
    while cleanups:
        gen = cleanups.pop()
        try:
            next(gen)
        except StopIteration:
            continue
        except BaseException as exc:
            if error is None:
                error = exc
            continue
        gen.close()
        if error is None:
            error = RuntimeError("a handoff rule yielded more than once")
    if error is not None:
        raise error


def check_result(result: object) -> None:
    """Refuse a result that dies with a handed-off resource (a DuckDB relation)."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(result, duckdb.DuckDBPyRelation):
        raise TypeError(
            "a DuckDB relation cannot be returned from a thread call: it belongs to the "
            "cursor concur opened for the call, which is closed now; materialise it before "
            "returning, e.g. with .pl(), .to_arrow_table() or .fetchall()"
        )


# --- lazy built-in rules ------------------------------------------------------------------


def _load_polars() -> None:
    import polars as pl

    def clone(value: Any) -> Any:
        return value.clone()

    for tp in (pl.DataFrame, pl.Series, pl.LazyFrame):
        _rules.setdefault(tp, (_Kind.TRANSFORM, clone))


def _load_duckdb() -> None:
    import duckdb

    def cursor(con: Any) -> Iterator[Any]:
        cur = con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def interrupt(cur: Any) -> None:
        # DuckDB's interrupt stops the query running now (it is not sticky: concur calls
        # it again every 100 ms); a cursor already closed has nothing to stop
        with contextlib.suppress(duckdb.Error):
            cur.interrupt()

    if duckdb.DuckDBPyConnection not in _rules:
        _rules[duckdb.DuckDBPyConnection] = (_Kind.GENERATOR, cursor)
        _interrupts[duckdb.DuckDBPyConnection] = interrupt


def _load_pyarrow() -> None:
    pa: Any = importlib.import_module("pyarrow")

    for tp in (
        pa.Array,
        pa.ChunkedArray,
        pa.RecordBatch,
        pa.Table,
        pa.Scalar,
        pa.Schema,
        pa.Field,
        pa.DataType,
    ):
        _rules.setdefault(tp, (_Kind.SAFE, None))


_lazy_loaders.update(
    polars=_load_polars, duckdb=_load_duckdb, _duckdb=_load_duckdb, pyarrow=_load_pyarrow
)
