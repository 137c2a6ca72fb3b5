"""The ``concur`` logger, fetched when something is logged: ``import logging`` would be the
heaviest part of ``import concur``, and concur logs only on rare paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import logging

__all__ = ["logger"]


def logger() -> logging.Logger:
    """The ``concur`` logger."""
    import logging  # a dictionary lookup once it has been imported

    return logging.getLogger("concur")
