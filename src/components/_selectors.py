"""Feature selectors: absolute correlation (with redundancy pruning) and mutual information.

What both share: the candidates are the numeric columns; only rows where the target is
present count; a candidate with fewer than ``min_rows`` non-missing rows there is not
scored (``Selection.unsupported``); scores are ranked after rounding to ``SCORE_DIGITS``
(9) decimal places, ties going to the name that sorts first, so the ranking does not
depend on the order of the rows.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Final, final

import attrs
import polars as pl

from ._common import check_int, check_name, is_number
from ._interfaces import Selection, SyncFeatureSelector

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

__all__ = ["SCORE_DIGITS", "CorrelationSelector", "MutualInformationSelector", "default_min_rows"]

SCORE_DIGITS: Final = 9
"""Scores are compared after rounding to this many decimal places (ties: by name)."""

_TARGET: Final = "__concur_target"
_ROW: Final = "__concur_row"
_LONG_ROWS: Final = 4_000_000


def default_min_rows(rows: int) -> int:
    """The default minimum support: the larger of 30 and 10% of the target's *rows*."""
    return max(30, math.ceil(rows / 10))


def prepare(
    features: pl.DataFrame, target: pl.Series, owner: str
) -> tuple[pl.DataFrame, list[str]]:
    """The rows where the target is present: target and numeric candidates, as Float64.

    NaN and infinities count as missing (null). Non-numeric columns of *features* are not
    candidates.

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
    frame = frame.select(pl.when(pl.all().is_finite()).then(pl.all()).name.keep())
    return frame.filter(pl.col(_TARGET).is_not_null()), candidates


def supported(
    frame: pl.DataFrame, candidates: list[str], min_rows: int | None
) -> tuple[list[str], list[str], int]:
    """Split *candidates* into those with enough rows in *frame* and the others.

    Returns the supported candidates, the unsupported ones (both in column order) and the
    minimum applied (*min_rows*, or :func:`default_min_rows` of the frame's rows).
    """
    least = default_min_rows(frame.height) if min_rows is None else min_rows
    if not candidates:
        return [], [], least
    counts = frame.select(pl.col(candidates).count()).row(0)
    enough = [n >= least for n in counts]
    scored = [c for c, ok in zip(candidates, enough, strict=True) if ok]
    dropped = [c for c, ok in zip(candidates, enough, strict=True) if not ok]
    return scored, dropped, least


def _finite(value: object) -> float:
    if not is_number(value):
        return 0.0
    return float(value) if math.isfinite(value) else 0.0


def _rounded(score: float) -> float:
    return round(score, SCORE_DIGITS)


def _abs_corr(a: str, b: str) -> pl.Expr:
    x, y = pl.col(a), pl.col(b)
    both = x.is_not_null() & y.is_not_null()
    return pl.corr(x.filter(both), y.filter(both)).abs()


def _ranked(names: Sequence[str], scores: dict[str, float]) -> list[str]:
    # best first, compared at SCORE_DIGITS (the last bits of a sum depend on the row
    # order), ties by name: the same ranking whatever the order of rows or columns
    return sorted(names, key=lambda name: (-_rounded(scores[name]), name))


@final
@attrs.frozen(kw_only=True)
class CorrelationSelector(SyncFeatureSelector):
    """Rank features by absolute Pearson correlation with the target, pruning redundancy.

    A candidate's score is ``|corr(feature, target)|`` over the rows where both are
    present (NaN and infinities count as missing); a constant column scores 0. A candidate
    present on fewer than *min_rows* of the target's rows is not scored (it goes to
    :attr:`Selection.unsupported`). Scores are ranked after rounding to 9 decimal places,
    ties going to the name that sorts first. Going down the ranking, a candidate whose
    absolute correlation with an already chosen feature exceeds *max_correlation*, over at
    least *min_rows* rows where both are present (and the target too), is dropped, until
    *k* are chosen. Non-numeric columns are not candidates.

    Attributes:
        name: the selector's name.
        max_correlation: the largest absolute correlation allowed between two chosen
            features (1.0 disables the pruning).
        min_score: candidates scoring at most this are never chosen.
        min_rows: the fewest non-missing rows a candidate must share with the target to
            be scored, and two candidates with each other (and the target) to be compared;
            None means the larger of 30 and 10% of the target's non-missing rows.
    """

    name: str = "correlation"
    max_correlation: float = 0.95
    min_score: float = 0.0
    min_rows: int | None = None

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "CorrelationSelector")
        if not is_number(self.max_correlation) or not 0 < self.max_correlation <= 1:
            raise ValueError(
                f"CorrelationSelector: max_correlation must be in (0, 1], "
                f"got {self.max_correlation!r}"
            )
        check_int(
            self.min_rows, "CorrelationSelector: min_rows", minimum=1, optional=True, field=True
        )

    @override
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score every numeric column with enough rows and choose at most *k* (blocking).

        Raises:
            TypeError: *target* is not numeric, or *k* is not an int.
            ValueError: ``k < 1``, or *target* and *features* differ in length.
        """
        check_int(k, "k")
        frame, candidates = prepare(features, target, "CorrelationSelector")
        scored, unsupported, least = supported(frame, candidates, self.min_rows)
        if not scored:
            return Selection((), {}, unsupported=unsupported)
        row = frame.select([_abs_corr(c, _TARGET).alias(c) for c in scored]).row(0)
        scores = {c: _finite(v) for c, v in zip(scored, row, strict=True)}
        chosen: list[str] = []
        for name in _ranked(scored, scores):
            if len(chosen) == k or _rounded(scores[name]) <= self.min_score:
                break
            if chosen and self.max_correlation < 1 and self._redundant(frame, name, chosen, least):
                continue
            chosen.append(name)
        return Selection(chosen, scores, unsupported=unsupported)

    def _redundant(self, frame: pl.DataFrame, name: str, chosen: list[str], least: int) -> bool:
        """Whether *name* correlates above the limit with a chosen feature, on enough rows."""
        x = pl.col(name).is_not_null()
        exprs: list[pl.Expr] = []
        for i, other in enumerate(chosen):
            exprs.append((x & pl.col(other).is_not_null()).sum().alias(f"n{i}"))
            exprs.append(_abs_corr(name, other).alias(f"r{i}"))
        row = frame.select(exprs).row(0)
        return any(
            row[2 * i] >= least and _rounded(_finite(row[2 * i + 1])) > self.max_correlation
            for i in range(len(chosen))
        )


@final
@attrs.frozen(kw_only=True)
class MutualInformationSelector(SyncFeatureSelector):
    """Rank features by binned mutual information with the target, above chance.

    Feature and target are each cut into at most *bins* equal-frequency bins (ties share a
    bin, so a constant column has one bin and scores 0). The plug-in mutual information of
    the two binnings, over the rows where both are present (NaN and infinities count as
    missing), in nats, is biased upwards, the more so the fewer rows; so it is compared
    with chance: the same estimate is made with the target shuffled, *permutations* times
    (every candidate sees the same shuffles). A candidate's score is its estimate minus the
    mean of its shuffled estimates (clipped at 0): the information beyond what its
    binning finds in noise. The chance level (:attr:`Selection.chance`) is the largest
    score any candidate reached under any shuffle; only candidates scoring above it are
    chosen, so a target independent of every feature selects nothing except with
    probability ``1 / (permutations + 1)`` (5% by default). The best *k* are chosen.

    Candidates present on fewer than *min_rows* of the target's rows are not scored
    (:attr:`Selection.unsupported`). Scores are ranked after rounding to 9 decimal places,
    ties going to the name that sorts first; the rows are first put in an order given by
    their content, so shuffling them changes nothing. Non-numeric columns are not
    candidates.

    Attributes:
        name: the selector's name.
        bins: the number of bins per variable (at least 2).
        min_score: candidates scoring at most this are never chosen.
        max_rows: frames with more rows (where the target is present) are scored on this
            many of them, chosen by a hash of their content (so the same rows, whatever
            their order); None scores every row.
        min_rows: the fewest non-missing rows a candidate must share with the target (on
            the rows scored) to be scored; None means the larger of 30 and 10% of the
            target's non-missing rows.
        permutations: how many shuffles of the target make the chance level (at least 1).
    """

    name: str = "mutual_information"
    bins: int = 16
    min_score: float = 0.0
    max_rows: int | None = 50_000
    min_rows: int | None = None
    permutations: int = 19

    def __attrs_post_init__(self) -> None:
        check_name(self.name, "MutualInformationSelector")
        owner = "MutualInformationSelector"
        check_int(self.bins, f"{owner}: bins", minimum=2, field=True)
        check_int(self.max_rows, f"{owner}: max_rows", minimum=1, optional=True, field=True)
        check_int(self.min_rows, f"{owner}: min_rows", minimum=1, optional=True, field=True)
        check_int(self.permutations, f"{owner}: permutations", minimum=1, field=True)

    @override
    def select(self, features: pl.DataFrame, target: pl.Series, k: int) -> Selection:
        """Score every numeric column with enough rows and choose at most *k* (blocking).

        Its cost grows with rows x candidates x (*permutations* + 1).

        Raises:
            TypeError: *target* is not numeric, or *k* is not an int.
            ValueError: ``k < 1``, or *target* and *features* differ in length.
        """
        check_int(k, "k")
        frame, candidates = prepare(features, target, "MutualInformationSelector")
        # an order given by the rows' content: the sample and the shuffles are then the
        # same whatever the order of the rows (the target breaks ties of the hash)
        order = (
            frame.select(pl.arg_sort_by(pl.lit(frame.hash_rows(seed=0)), pl.col(_TARGET)))
            .to_series()
            .head(frame.height if self.max_rows is None else self.max_rows)
        )
        frame = frame[order]
        scored, unsupported, _ = supported(frame, candidates, self.min_rows)
        if not scored:
            return Selection((), {}, unsupported=unsupported)
        estimates, chance = self._estimates(frame, scored)
        scores = {c: max(estimates[c], 0.0) for c in scored}
        floor = max(_rounded(chance), self.min_score)
        chosen = [c for c in _ranked(scored, scores) if _rounded(scores[c]) > floor][:k]
        return Selection(chosen, scores, unsupported=unsupported, chance=chance)

    def _binned(self, x: pl.Expr) -> pl.Expr:
        # equal-frequency bins over the values present; ties (rank "min") share a bin
        rank = x.rank("min") - 1
        return (rank * self.bins / x.count()).floor().cast(pl.Int64)

    def _estimates(self, frame: pl.DataFrame, scored: list[str]) -> tuple[dict[str, float], float]:
        """Each candidate's plug-in estimate minus its shuffled mean, and the chance level."""
        bins = self.bins
        binned = frame.select(
            self._binned(pl.col(_TARGET)).alias(_TARGET),
            *[self._binned(pl.col(c)).alias(str(i)) for i, c in enumerate(scored)],
        )
        y = binned.get_column(_TARGET)
        shuffles = [y, *(y.shuffle(seed=seed) for seed in range(1, self.permutations + 1))]
        # estimates[shuffle][candidate]; the candidates go in blocks whose long form (one
        # row per present value) stays under _LONG_ROWS rows
        estimates = [[0.0] * len(scored) for _ in shuffles]
        block = max(1, _LONG_ROWS // max(1, binned.height))
        # the codes (c * bins + x) * bins + y of a block fit in 32 bits unless bins is huge
        code = pl.Int32 if block * bins * bins < 2**31 else pl.Int64
        for start in range(0, len(scored), block):
            columns = [str(i) for i in range(start, min(len(scored), start + block))]
            long = (
                binned.select(columns)
                .with_row_index(_ROW)
                .unpivot(index=_ROW, on=columns, variable_name="c", value_name="x")
                .drop_nulls("x")
                .select(
                    pl.col(_ROW),
                    ((pl.col("c").cast(pl.Int64) - start) * bins + pl.col("x")).cast(code),
                )
            )
            rows = long.get_column(_ROW)
            for shuffle, target in enumerate(shuffles):
                joint = long.select(pl.col("c") * bins + target.cast(code).gather(rows))
                for c, mi in _plug_in(joint.to_series(), bins).iter_rows():
                    estimates[shuffle][start + c] = mi
        real, nulls = estimates[0], estimates[1:]
        means = [math.fsum(null[i] for null in nulls) / len(nulls) for i in range(len(scored))]
        excess = {c: real[i] - means[i] for i, c in enumerate(scored)}
        chance = max(null[i] - means[i] for null in nulls for i in range(len(scored)))
        return excess, max(chance, 0.0)


def _plug_in(codes: pl.Series, bins: int) -> pl.DataFrame:
    """The plug-in mutual information (nats) per candidate ``c``, from the codes
    ``(c * bins + x) * bins + y`` of its rows: a frame of (candidate, estimate)."""
    counts = codes.value_counts(name="n").sort(codes.name)  # sorted: the same sums every run
    cells = counts.select(
        (pl.col(codes.name) // (bins * bins)).alias("c"),
        (pl.col(codes.name) // bins % bins).alias("x"),
        (pl.col(codes.name) % bins).alias("y"),
        pl.col("n"),
    )

    def plogp(n: pl.Expr) -> pl.Expr:
        return (n * n.cast(pl.Float64).log()).sum()

    def marginal(axis: str) -> pl.DataFrame:
        sums = cells.group_by("c", axis, maintain_order=True).agg(pl.col("n").sum())
        return sums.group_by("c", maintain_order=True).agg(plogp(pl.col("n")).alias(axis))

    joint = cells.group_by("c", maintain_order=True).agg(
        plogp(pl.col("n")).alias("xy"), pl.col("n").sum().cast(pl.Float64).alias("n")
    )
    terms = joint.join(marginal("x"), on="c").join(marginal("y"), on="c")
    mi = (pl.col("xy") - pl.col("x") - pl.col("y")) / pl.col("n") + pl.col("n").log()
    return terms.select("c", mi.alias("mi"))
