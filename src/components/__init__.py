"""components: feature generators and selectors over polars and DuckDB, written for concur.

Every interface is an async ABC (methods ``a<verb>``) with a ``Sync`` twin whose sync
methods (``<verb>``) run in worker threads through :func:`concur.to_thread`. The runner
:func:`select_best_features` runs any mix of them concurrently and selects the best
features; ``concur features`` runs it from the command line.
"""

from ._data import DEFAULT_ROWS as DEFAULT_ROWS
from ._data import PLANTED_FEATURES as PLANTED_FEATURES
from ._data import TARGET as TARGET
from ._data import make_dataset as make_dataset
from ._duckdb import SQLWindowFeatures as SQLWindowFeatures
from ._http import HttpLookupFeatures as HttpLookupFeatures
from ._interfaces import FeatureGenerator as FeatureGenerator
from ._interfaces import FeatureSelector as FeatureSelector
from ._interfaces import Selection as Selection
from ._interfaces import SyncFeatureGenerator as SyncFeatureGenerator
from ._interfaces import SyncFeatureSelector as SyncFeatureSelector
from ._polars import AutoregressiveFeatures as AutoregressiveFeatures
from ._polars import InteractionFeatures as InteractionFeatures
from ._polars import LagFeatures as LagFeatures
from ._polars import RollingFeatures as RollingFeatures
from ._report import GeneratorRun as GeneratorRun
from ._report import SelectionReport as SelectionReport
from ._runner import select_best_features as select_best_features
from ._runner import select_best_features_sync as select_best_features_sync
from ._selectors import CorrelationSelector as CorrelationSelector
from ._selectors import MutualInformationSelector as MutualInformationSelector

__all__ = (  # noqa: RUF022 (plainly sorted, as tests/test_exports.py checks for concur)
    "AutoregressiveFeatures",
    "CorrelationSelector",
    "DEFAULT_ROWS",
    "FeatureGenerator",
    "FeatureSelector",
    "GeneratorRun",
    "HttpLookupFeatures",
    "InteractionFeatures",
    "LagFeatures",
    "MutualInformationSelector",
    "PLANTED_FEATURES",
    "RollingFeatures",
    "SQLWindowFeatures",
    "Selection",
    "SelectionReport",
    "SyncFeatureGenerator",
    "SyncFeatureSelector",
    "TARGET",
    "make_dataset",
    "select_best_features",
    "select_best_features_sync",
)


def _fix_module() -> None:
    # tracebacks and docs say components.LagFeatures, not components._polars.LagFeatures
    for name in __all__:
        if getattr(globals()[name], "__module__", "").startswith(f"{__name__}._"):
            globals()[name].__module__ = __name__


_fix_module()
del _fix_module
