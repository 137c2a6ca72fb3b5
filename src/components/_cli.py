"""The ``concur`` command line: ``concur features [PATH] --target COL ...``.

Progress and notices go to stderr; the result goes to stdout (a table, or exactly one JSON
document with ``--format json``). Errors print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    from ._data import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``concur`` command."""
    from ._data import DEFAULT_ROWS

    parser = argparse.ArgumentParser(
        prog=PROG, description="Structured concurrency for data components."
    )
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
        "--k", type=_positive_int, default=20, help="how many features to select (default 20)"
    )
    features.add_argument(
        "--threads",
        type=_positive_int,
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
    features.add_argument("--entity", metavar="COL", help="the entity column of PATH")
    features.add_argument("--order", metavar="COL", help="the column ordering rows of PATH")
    features.add_argument(
        "--rows",
        type=_positive_int,
        default=DEFAULT_ROWS,
        help=f"rows of the built-in data set (default {DEFAULT_ROWS:,})",
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
        if suffix == ".csv":
            return pl.read_csv(path)
        return pl.read_parquet(path)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CLIError(f"cannot read {path_text}: {reason}") from None


def _check_columns(frame: pl.DataFrame, args: argparse.Namespace, source: str) -> None:
    target: str = args.target
    if target not in frame.columns:
        raise CLIError(f"--target {target}: no column {target!r} in {source}")
    dtype = frame.schema[target]
    if not dtype.is_numeric() and not dtype.is_(_boolean()):  # a Decimal target is numeric
        raise CLIError(f"--target {target}: the target column must be numeric, it is {dtype}")
    for option in ("entity", "order"):
        column: str | None = getattr(args, option)
        if column is not None and column not in frame.columns:
            raise CLIError(f"--{option} {column}: no column {column!r} in {source}")
        if column is not None and column == target:
            raise CLIError(f"--{option} {column}: the {option} column cannot be the target")
    # the generators' inputs: the numeric columns other than target, entity and order
    keys = {target, args.entity, args.order}
    if not any(
        name not in keys and dtype.is_numeric() and not dtype.is_decimal()
        for name, dtype in frame.schema.items()
    ):
        raise CLIError(
            f"no numeric feature columns in {source} besides the target, entity and order "
            f"columns (columns: {', '.join(frame.columns)})"
        )


def _boolean() -> Any:
    import polars as pl

    return pl.Boolean


def _load(args: argparse.Namespace, notice: Any) -> tuple[pl.DataFrame, str]:
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
    _check_columns(frame, args, source)
    return frame, source


def _components(
    args: argparse.Namespace,
) -> tuple[list[FeatureGenerator], FeatureSelector]:
    from ._duckdb import SQLWindowFeatures
    from ._polars import InteractionFeatures, LagFeatures, RollingFeatures
    from ._selectors import CorrelationSelector, MutualInformationSelector

    keys = {"entity": args.entity, "order": args.order}
    generators: list[FeatureGenerator] = [
        LagFeatures(**keys),
        RollingFeatures(**keys),
        InteractionFeatures(**keys),
        SQLWindowFeatures(**keys),
    ]
    selector: FeatureSelector = (
        CorrelationSelector() if args.selector == "correlation" else MutualInformationSelector()
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

    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
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


def _features(args: argparse.Namespace) -> int:
    import anyio
    from rich.console import Console

    stderr = Console(stderr=True, highlight=False)

    def notice(text: str) -> None:
        stderr.print(f"{PROG} features: {text}", markup=False, soft_wrap=True)

    frame, _ = _load(args, notice)
    generators, selector = _components(args)
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
    if args.format == "json":
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
    else:
        Console(highlight=False).print(report)
    return 0


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
