"""Handing arguments off to worker threads safely.

Before a sync call runs in a worker thread (:func:`concur.to_thread`, :func:`concur.call`,
:meth:`concur.TaskGroup.spawn`), each argument goes through the handoff rules:

- values that are safe to share pass as they are: ``None``, ``bool``, ``int``, ``float``,
  ``complex``, ``str``, ``bytes``, enums, ``range``, ``slice``, ``pathlib.PurePath``, the
  ``datetime`` types, ``Decimal``, ``Fraction``, ``UUID``, compiled regular expressions,
  functions and classes, frozen slotted attrs instances (their fields are their author's
  responsibility), and the immutable pyarrow objects (``Array``, ``ChunkedArray``,
  ``RecordBatch``, ``Table``, ``Scalar``, ``Schema``, ``Field``, ``DataType``);
- tuples (named tuples too) and frozensets are handed off item by item;
- a polars ``DataFrame``, ``Series`` or ``LazyFrame`` is replaced by its ``clone()``
  (zero-copy; its cost grows with the number of columns, not rows);
- a DuckDB connection is replaced by a fresh ``cursor()``, closed once the thread function
  has returned, whatever the outcome. A cursor is a separate connection to the same
  database: it does not see the caller's temporary tables, registered frames or open
  transaction. A DuckDB relation returned from such a call would be dead once its cursor
  closes, so returning one raises ``TypeError``: materialise it (``.pl()``, ``.fetchall()``);
- the arguments and keywords stored in a ``functools.partial`` given as the callable are
  handed off the same way; a bound method's ``__self__`` is passed as it is;
- anything else is *unknown*, and the policy decides: ``"warn"`` (the default) passes it with
  an :class:`~concur.UnsafeHandoffWarning` naming its type, ``"strict"`` refuses it with
  :class:`~concur.UnsafeHandoffError` before the function runs, and ``"off"`` passes every
  value as it is, built-in rules included.

Arguments of async calls stay on the event loop and are never touched. Rules for polars,
DuckDB and pyarrow are installed only once such a value is handed off, so importing concur
imports none of them. Register rules of your own with :func:`register`; hand values off
yourself, for a helper that passes them to a thread or an executor of its own, with
:class:`handed`.
"""

from ._core.handoff import Policy as Policy
from ._core.handoff import handed as handed
from ._core.handoff import register as register

__all__ = ("Policy", "handed", "register")
