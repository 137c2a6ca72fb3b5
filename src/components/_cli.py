"""The ``concur`` command line: ``concur features [PATH] --target COL ...``.

Progress and notices go to stderr; the result goes to stdout (a table, or exactly one JSON
document with ``--format json``). Errors print one line on stderr and exit with code 2.
``concur --version`` prints the installed version.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

if TYPE_CHECKING:
    import polars as pl

    from ._interfaces import FeatureGenerator, FeatureSelector
    from ._report import GeneratorRun, SelectionReport

__all__ = ["main"]

EXIT_ERROR: Final = 2
PROG: Final = "concur"


class CLIError(Exception):
    """A problem to report on one line of stderr, with exit code 2."""


def _whole_number(text: str, minimum: int = 1, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise argparse.ArgumentTypeError(f"must be between {minimum} and {maximum}, got {value}")
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _seed(text: str) -> int:
    from ._data import MAX_SEED

    return _whole_number(text, 0, MAX_SEED)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("concur")
    except PackageNotFoundError:  # pragma: no cover (run from a source tree, not installed)
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``concur`` command."""
    from ._data import DEFAULT_ROWS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Structured concurrency for data components."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    features = commands.add_parser(
        "features",
        help="generate features and select the best ones",
        description=(
            "Run the lag, rolling, interaction and SQL window feature generators "
            "concurrently on a Parquet or CSV file (or on the built-in data set when no "
            "PATH is given) and select the best features for a target column."
        ),
    )
    features.add_argument("path", nargs="?", metavar="PATH", help="a .parquet or .csv file")
    features.add_argument(
        "--target", metavar="COL", help="the column to predict (required with PATH)"
    )
    features.add_argument(
        "--k", type=_whole_number, default=20, help="how many features to select (default 20)"
    )
    features.add_argument(
        "--threads",
        type=_whole_number,
        default=None,
        metavar="N",
        help="the most generator threads at once (default: the usable CPUs)",
    )
    features.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    features.add_argument("--format", choices=("table", "json"), default="table")
    features.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    features.add_argument(
        "--selector", choices=("correlation", "mutual-info"), default="correlation"
    )
    features.add_argument(
        "--min-rows",
        type=_whole_number,
        default=None,
        metavar="N",
        help="the fewest rows a feature must share with the target to be scored "
        "(default: the larger of 30 and 10%% of the target's rows)",
    )
    features.add_argument("--entity", metavar="COL", help="the entity column of PATH")
    features.add_argument("--order", metavar="COL", help="the column ordering rows of PATH")
    features.add_argument(
        "--autoregressive",
        action="store_true",
        help="also make features from the target's own past (lags and rolling statistics "
        "of strictly earlier rows, per entity); on by itself when PATH has no numeric "
        "column besides the target",
    )
    features.add_argument(
        "--rows",
        type=_whole_number,
        default=DEFAULT_ROWS,
        help=f"rows of the built-in data set (default {DEFAULT_ROWS:,}; the benchmarks use "
        "1,000,000)",
    )
    features.add_argument("--seed", type=_seed, default=0, help="seed of the built-in data set")
    return parser


def _read(path_text: str) -> pl.DataFrame:
    import polars as pl

    path = Path(path_text)
    if not path.exists():
        raise CLIError(f"no such file: {path_text}")
    if path.is_dir():
        raise CLIError(f"{path_text} is a directory, not a Parquet or CSV file")
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise CLIError(f"cannot read {path_text}: expected a .parquet or .csv file")
    try:
        if suffix != ".csv":
            return pl.read_parquet(path)
        try:
            return pl.read_csv(path)
        except pl.exceptions.ComputeError:
            # polars infers the column types from the first 100 rows: a column of whole
            # numbers with a decimal further down fails; infer from every row instead
            return pl.read_csv(path, infer_schema_length=None)
    except Exception as exc:
        raise CLIError(f"cannot read {path_text}: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    """A reader's error on one line: its first paragraph, and polars' original error.

    polars' CSV errors run over many lines (hints for its Python API), and quote the bad
    field in backticks, newline included; whitespace is folded so the line stays whole.
    """
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    parts = [re.split(r"\n\s*\n", text, maxsplit=1)[0]]
    original = re.search(r"Original error:\s*```(.*?)```", text, flags=re.DOTALL)
    if original is not None:
        parts.append(": ".join(re.split(r"\n\s*\n", original.group(1).strip())))
    line = " ".join("; ".join(parts).split())
    line = re.sub(r"`([^`]*)`", lambda quoted: f"`{quoted.group(1).strip()}`", line)
    if line.count("`") % 2:  # a quote cut in two: drop the quote marks, keep the text
        line = line.replace("`", "")
    return line


def _check_columns(frame: pl.DataFrame, args: argparse.Namespace, source: str) -> bool:
    """Check the target, entity and order columns; whether there are feature columns.

    Raises:
        CLIError: nothing can be selected from *frame* for the target (a one-line reason).
    """
    target: str = args.target
    if frame.height == 0:
        header = " a header but" if source.lower().endswith(".csv") else ""
        raise CLIError(f"{source} has{header} no rows: there is nothing to select from")
    if target not in frame.columns:
        raise CLIError(f"--target {target}: no column {target!r} in {source}")
    column = frame.get_column(target)
    if column.null_count() == column.len():
        raise CLIError(
            f"--target {target}: the target column is empty (no value in any of the "
            f"{frame.height:,} rows of {source})"
        )
    dtype = column.dtype
    if not dtype.is_numeric() and dtype != _boolean():  # a Decimal target is numeric
        raise CLIError(
            f"--target {target}: the target column must be numeric, it is {dtype}"
            f"{_first_non_number(column)}"
        )
    for option in ("entity", "order"):
        key: str | None = getattr(args, option)
        if key is not None and key not in frame.columns:
            raise CLIError(f"--{option} {key}: no column {key!r} in {source}")
        if key is not None and key == target:
            raise CLIError(f"--{option} {key}: the {option} column cannot be the target")
    _check_target_varies(column, source)
    # the generators' inputs: the numeric columns other than target, entity and order
    keys = {target, args.entity, args.order}
    return any(
        name not in keys and dtype.is_numeric() and not dtype.is_decimal()
        for name, dtype in frame.schema.items()
    )


def _first_non_number(column: pl.Series) -> str:
    """`` (first non-numeric value: 'x', data row 3)`` for a text column, else ''."""
    import polars as pl

    if column.dtype != pl.String:
        return ""
    bad = column.is_not_null() & column.cast(pl.Float64, strict=False).is_null()
    if not bad.any():  # pragma: no cover (a String column polars could not read as numbers)
        return ""
    row = int(bad.arg_true()[0])
    return f" (first non-numeric value: {column[row]!r}, data row {row + 1})"


def _check_target_varies(column: pl.Series, source: str) -> None:
    """Raise unless the target has two different values: a score needs variation."""
    values = column.drop_nulls()
    if values.dtype.is_float():
        values = values.filter(values.is_finite())  # the selectors count NaN/inf as missing
    name = column.name
    if column.len() == 1:
        raise CLIError(
            f"{source} has only 1 row: a feature is chosen by how it varies with the target "
            "from row to row, which needs at least 2 rows"
        )
    if values.len() < 2:
        raise CLIError(
            f"--target {name}: only {values.len()} of the {column.len():,} rows of {source} "
            "has a usable target value (not null, NaN or infinite); selecting features "
            "needs at least 2"
        )
    if values.min() == values.max():
        raise CLIError(
            f"--target {name}: the target is constant ({values[0]} in all {values.len():,} "
            "rows that have a value): no feature can explain a column that does not vary, "
            "so nothing can be selected"
        )


def _boolean() -> Any:
    import polars as pl

    return pl.Boolean


def _load(args: argparse.Namespace, notice: Callable[[str], None]) -> tuple[pl.DataFrame, bool]:
    """The input frame, and whether it has feature columns besides target/entity/order."""
    if args.path is None:
        from ._data import TARGET, make_dataset

        if args.target is None:
            args.target = TARGET
        if args.entity is None and args.order is None:
            args.entity, args.order = "entity", "order"
        notice(
            f"no PATH given: using the built-in data set ({args.rows:,} rows, seed "
            f"{args.seed}, target {TARGET!r}, entity 'entity', order 'order')"
        )
        frame = make_dataset(args.rows, seed=args.seed)
        source = "the built-in data set"
    else:
        if args.target is None:
            raise CLIError("--target COL is required with PATH")
        frame = _read(args.path)
        source = args.path
    has_features = _check_columns(frame, args, source)
    if not has_features:
        keyless = args.entity is None and args.order is None
        notice(
            f"no numeric feature columns in {source} besides the target, entity and order "
            f"columns: using the target's own past instead (its lags and rolling statistics "
            f"over earlier rows, {_series(args)})"
            + ("; give --entity and --order for one series per entity" if keyless else "")
        )
    return frame, has_features


def _series(args: argparse.Namespace) -> str:
    """How the rows make series: ``one series per 'symbol', in 'month' order``."""
    per = "" if args.entity is None else f" per {args.entity!r},"
    order = "file order" if args.order is None else f"{args.order!r} order"
    return f"one series{per} in {order}"


def _components(
    args: argparse.Namespace, has_features: bool
) -> tuple[list[FeatureGenerator], FeatureSelector]:
    """The generators and the selector: the four defaults, plus the target's own past
    with ``--autoregressive``; only the target's past when there are no feature columns."""
    from ._duckdb import SQLWindowFeatures
    from ._polars import AutoregressiveFeatures, InteractionFeatures, LagFeatures, RollingFeatures
    from ._selectors import CorrelationSelector, MutualInformationSelector

    keys = {"entity": args.entity, "order": args.order}
    generators: list[FeatureGenerator] = []
    if has_features:
        generators += [
            LagFeatures(**keys),
            RollingFeatures(**keys),
            InteractionFeatures(**keys),
            SQLWindowFeatures(**keys),
        ]
    if args.autoregressive or not has_features:
        generators.append(AutoregressiveFeatures(target=args.target, **keys))
    selector: FeatureSelector = (
        CorrelationSelector(min_rows=args.min_rows)
        if args.selector == "correlation"
        else MutualInformationSelector(min_rows=args.min_rows)
    )
    return generators, selector


async def _run(
    frame: pl.DataFrame,
    args: argparse.Namespace,
    generators: list[FeatureGenerator],
    selector: FeatureSelector,
) -> SelectionReport:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ._runner import progress_hook, select_best_features

    console = Console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,  # bars on a terminal only: a pipe gets none
    )
    tasks = [progress.add_task(f"{g.name}: waiting", total=1, start=False) for g in generators]

    def on_progress(index: int, generator: FeatureGenerator, run: GeneratorRun | None) -> None:
        task = tasks[index]
        if run is None:
            progress.start_task(task)
            progress.update(task, description=f"{generator.name}: running")
        else:
            progress.update(
                task,
                completed=1,
                description=f"{generator.name}: {run.outcome} "
                f"({run.columns} columns, {run.seconds:.2f} s)",
            )

    token = progress_hook.set(on_progress)
    try:
        with progress:
            return await select_best_features(
                frame,
                target=args.target,
                generators=generators,
                selector=selector,
                k=args.k,
                thread_limit=args.threads,
                on_error=args.on_error,
            )
    finally:
        progress_hook.reset(token)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        errors = cast("BaseExceptionGroup[BaseException]", exc).exceptions
        inner = "; ".join(_describe(e) for e in errors)
        return f"{exc.message}: {inner}"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_job(
    args: argparse.Namespace, notice: Callable[[str], None]
) -> tuple[pl.DataFrame, SelectionReport]:
    """The main job of ``concur features``: load, generate, select; its input and report.

    *args* come from :func:`build_parser`; *notice* receives the notices for stderr.
    Blocks until done (it runs its own event loop). ``benchmarks/bench_memory.py`` measures
    this function.

    Raises:
        CLIError: the input cannot be used, or the run failed (a one-line reason).
    """
    import anyio

    frame, has_features = _load(args, notice)
    generators, selector = _components(args, has_features)
    try:
        report = anyio.run(
            functools.partial(_run, frame, args, generators, selector), backend=args.backend
        )
    except (Exception, BaseExceptionGroup) as exc:
        raise CLIError(_describe(exc)) from None
    finally:
        for generator in generators:
            close = getattr(generator, "close", None)
            if close is not None:
                close()
    return frame, report


def _features(args: argparse.Namespace) -> int:
    from rich.console import Console

    stderr = Console(stderr=True, highlight=False)

    def notice(text: str) -> None:
        stderr.print(f"{PROG} features: {text}", markup=False, soft_wrap=True)

    _, report = run_job(args, notice)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        Console(highlight=False).print(report)
    if not report.selection.names:
        notice(_why_nothing(report, args.target))
    return 0


def _why_nothing(report: SelectionReport, target: str) -> str:
    """The notice for an empty selection: what the candidates lacked."""
    selection = report.selection
    candidates = sum(run.columns for run in report.generators)
    unsupported = len(selection.unsupported)
    if candidates == 0:
        return "nothing selected: the generators made no candidate features"
    if not selection.scores:
        return (
            f"nothing selected: none of the {candidates} candidate features shares enough "
            f"rows with {target!r} to be scored (lags and rolling windows are empty in each "
            "series' first rows; more rows help)"
        )
    unscored = f"; {unsupported} more had too few rows to be scored" if unsupported else ""
    if selection.chance is not None:
        return (
            f"nothing selected: none of the {len(selection.scores)} scored features beat "
            f"chance for {target!r} (chance level {selection.chance:.4f}){unscored}"
        )
    return (
        f"nothing selected: none of the {len(selection.scores)} scored features scored above "
        f"the selector's minimum for {target!r}{unscored}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``concur`` command line and return its exit code.

    Blocks until the command is done; call it from a thread with no running event loop
    (it starts its own with :func:`anyio.run`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "features":
            return _features(args)
        parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    except CLIError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
