"""Feature selectors: absolute correlation (with redundancy pruning) and mutual information."""

from __future__ import annotations

import math
import sys
from typing import Final, final

import attrs
import polars as pl

from ._common import check_name
from ._interfaces import Selection, SyncFeatureSelector

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["CorrelationSelector", "MutualInformationSelector"]

_TARGET: Final = "__concur_target"


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return k


def prepare(
    features: pl.DataFrame, target: pl.Series, owner: str
) -> tuple[pl.DataFrame, list[str]]:
    """The numeric candidates and the target as one Float64 frame, NaN and infinities as null.

    Non-numeric columns of *features* are not candidates.

    Raises:
        TypeError: *features* is not a polars frame, or *target* not a numeric series.
        ValueError: *target* and *features* differ in length.
    """
    if not isinstance(features, pl.DataFrame):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(
            f"{owner}: features must be a polars DataFrame, got {type(features).__name__}"
        )
    if not isinstance(target, pl.Series):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{owner}: target must be a polars Series, got {type(target).__name__}")
    if not (target.dtype.is_numeric() or target.dtype == pl.Boolean):
        raise TypeError(f"{owner}: target must be numeric, got dtype {target.dtype}")
    if target.len() != features.height:
        raise ValueError(
            f"{owner}: target has {target.len()} values but features has {features.height} rows"
        )
    candidates = [
        name
        for name, dtype in features.schema.items()
        if (dtype.is_numeric() or dtype == pl.Boolean) and name != _TARGET
    ]
    frame = (
        target.cast(pl.Float64)
        .alias(_TARGET)
        .to_frame()
        .with_columns(features.select(candidates).cast(pl.Float64))
    )
    # NaN and infinities count as missing: one inf would make a correlation NaN (score 0)
    return frame.select(pl.when(pl.all().is_finite()).then(pl.all()).name.keep()), candidates


def _finite(value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def _abs_corr(a: str, b: str) -> pl.Expr:
    x, y = pl.col(a), pl.col(b)
    both = x.is_not_null() & y.is_not_null()
    return pl.corr(x.filter(both), y.filter(both)).abs()


def _ranked(names: list[str], scores: dict[str, float]) -> list[str]:
    # best first; ties keep the input order, so the result is deterministic
    return sorted(names, key=lambda name: -scores[name])


@final
@attrs.frozen(kw_only=True)
class CorrelationSelector(SyncFeatureSelector):
    """Rank features by absolute Pearson correlation with the target, pruning redundancy.

    A candidate's score is ``|corr(feature, target)|`` over the rows where both are
    present (NaN and infinities count as missing); a constant or empty column scores 0.
    Going down the ranking, a candidate whose absolute correlation with an already chosen
    feature exceeds *max_correlation* is dropped, until *k* are chosen. Non-numeric columns
    are not candidates.

    Attributes:
        name: the selector's name.
        max_correlation: the largest absolute correlation allowed between two chosen
            features (1.0 disables the pruning).
        min_score: candidates scoring at most this are never chosen.
    """

    name: str = "correlation"
    max_correlation: float = 0.95
    min_score: float = 0.0

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "CorrelationSelector")
        if not 0 < self.max_correlation <= 1:
            raise ValueError(
                f"CorrelationSelector: max_correlation must be in (0, 1], "
                f"got {self.max_correlation!r}"
            )

    @override
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score every numeric column and choose at most *k* (blocking).

        Raises:
            TypeError: *target* is not numeric, or *k* is not an int.
            ValueError: ``k < 1``, or *target* and *features* differ in length.
        """
        k = _check_k(k)
        frame, candidates = prepare(features, target, "CorrelationSelector")
        if not candidates:
            return Selection((), {})
        row = frame.select([_abs_corr(c, _TARGET).alias(c) for c in candidates]).row(0)
        scores = {c: _finite(v) for c, v in zip(candidates, row, strict=True)}
        chosen: list[str] = []
        for name in _ranked(candidates, scores):
            if len(chosen) == k or scores[name] <= self.min_score:
                break
            if chosen and self.max_correlation < 1:
                row = frame.select([_abs_corr(name, c).alias(c) for c in chosen]).row(0)
                if any(_finite(v) > self.max_correlation for v in row):
                    continue
            chosen.append(name)
        return Selection(chosen, scores)


@final
@attrs.frozen(kw_only=True)
class MutualInformationSelector(SyncFeatureSelector):
    """Rank features by binned mutual information with the target.

    Feature and target are each cut into at most *bins* equal-frequency bins (ties share a
    bin, so a constant column has one bin and scores 0); the score is the mutual
    information of the two binnings over the rows where both are present (NaN and
    infinities count as missing), in nats. The best *k* are chosen. Non-numeric columns
    are not candidates.

    Attributes:
        name: the selector's name.
        bins: the number of bins per variable (at least 2).
        min_score: candidates scoring at most this are never chosen.
        max_rows: frames with more rows are scored on a sample of this many rows, drawn
            with a fixed seed (so the result is deterministic); None scores every row.
    """

    name: str = "mutual_information"
    bins: int = 16
    min_score: float = 0.0
    max_rows: int | None = 250_000

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "MutualInformationSelector")
        for what, value, least in (("bins", self.bins, 2), ("max_rows", self.max_rows, 1)):
            if value is None and what == "max_rows":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"MutualInformationSelector: {what} must be an int >= {least}, got {value!r}"
                )

    @override
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score every numeric column and choose at most *k* (blocking).

        Raises:
            TypeError: *target* is not numeric, or *k* is not an int.
            ValueError: ``k < 1``, or *target* and *features* differ in length.
        """
        k = _check_k(k)
        frame, candidates = prepare(features, target, "MutualInformationSelector")
        if not candidates:
            return Selection((), {})
        if self.max_rows is not None and frame.height > self.max_rows:
            frame = frame.sample(self.max_rows, seed=0)
        y = pl.col(_TARGET)
        y_bin = self._binned(y)
        # one parallel pass: each candidate's joint bin code with the target (null if
        # either is missing); then a small count per candidate
        codes = frame.select(
            [
                (self._binned(pl.when(y.is_not_null()).then(pl.col(c))) * self.bins + y_bin).alias(
                    c
                )
                for c in candidates
            ]
        )
        scores = {c: self._mutual_information(codes.get_column(c)) for c in candidates}
        chosen = [c for c in _ranked(candidates, scores) if scores[c] > self.min_score][:k]
        return Selection(chosen, scores)

    def _binned(self, x: pl.Expr) -> pl.Expr:
        # equal-frequency bins over the values present; ties (rank "min") share a bin
        rank = x.rank("min") - 1
        return (rank * self.bins / x.count()).floor().cast(pl.Int64)

    def _mutual_information(self, codes: pl.Series) -> float:
        counts = codes.drop_nulls().value_counts()
        # sorted, so the float sum (and the ranking of ties) is the same on every run
        joint = sorted((int(code), int(c)) for code, c in counts.rows())
        n = sum(c for _, c in joint)
        if n == 0:
            return 0.0
        px: dict[int, int] = {}
        py: dict[int, int] = {}
        for code, c in joint:
            x, y = divmod(code, self.bins)
            px[x] = px.get(x, 0) + c
            py[y] = py.get(y, 0) + c
        mi = 0.0
        for code, c in joint:
            x, y = divmod(code, self.bins)
            mi += c / n * math.log(c * n / (px[x] * py[y]))
        return _finite(max(mi, 0.0))
