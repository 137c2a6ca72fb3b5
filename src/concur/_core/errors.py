"""Exceptions and warnings of concur.

The hierarchy::

    Exception
     └── ConcurError                 base of every concur-specific error
          └── UnsafeHandoffError     (also a TypeError) an argument cannot go to a thread
    UserWarning
     └── UnsafeHandoffWarning        an unknown mutable argument went to a thread as it is

Everything else concur raises is a builtin or an anyio exception: ``TypeError`` and
``ValueError`` for misuse, ``TimeoutError`` for an elapsed timeout, the backend's
cancellation exception for cancellation.
"""

from __future__ import annotations

__all__ = ["ConcurError", "UnsafeHandoffError", "UnsafeHandoffWarning"]


class ConcurError(Exception):
    """Base class of the exceptions that only concur raises."""


class UnsafeHandoffError(ConcurError, TypeError):
    """An argument is not safe to share with a worker thread and no rule hands it off.

    Raised under the ``"strict"`` handoff policy, before the function runs.
    """


class UnsafeHandoffWarning(UserWarning):
    """An argument of unknown thread-safety was passed to a worker thread as it is.

    Emitted under the ``"warn"`` handoff policy (the default). Register a rule with
    :func:`concur.handoff.register`, pass a copy, or choose the ``"strict"`` policy.
    """
