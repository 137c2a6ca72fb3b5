"""Review findings: each test pins a bug found in an adversarial review of components."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import attrs
import polars as pl
import pytest
import rich.console

from components import (
    CorrelationSelector,
    FeatureGenerator,
    GeneratorRun,
    LagFeatures,
    MutualInformationSelector,
    Selection,
    SelectionReport,
    select_best_features,
)


@attrs.frozen(eq=False)
class _Columns(FeatureGenerator):
    """An async generator returning copies of ``x`` under the given column names."""

    name: str
    columns: tuple[str, ...] = ("x",)
    ran: list[bool] = attrs.field(factory=list)

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        self.ran.append(True)
        return frame.select(pl.col("x").alias(column) for column in self.columns)


def _frame() -> pl.DataFrame:
    return pl.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [2.0, 4.0, 6.0, 9.0]})


async def test_prefixes_that_overlap_are_refused_before_anything_runs() -> None:
    """Names "a" and "a_" clash once prefixed ("a__" starts "a___"): ValueError, nothing runs."""
    first, second = _Columns(name="a", columns=("_z",)), _Columns(name="a_", columns=("z",))
    with pytest.raises(ValueError, match="clash"):
        await select_best_features(
            _frame(), target="y", generators=[first, second], selector=CorrelationSelector()
        )
    assert first.ran == []
    assert second.ran == []


async def test_an_empty_selection_still_gives_row_aligned_features() -> None:
    """When nothing is selected, report.features has no columns but the input's rows."""
    constant = pl.DataFrame({"x": [1.0, 1.0, 1.0, 1.0], "y": [2.0, 4.0, 6.0, 9.0]})
    report = await select_best_features(
        constant, target="y", generators=[_Columns(name="g")], selector=CorrelationSelector()
    )
    assert report.selection.names == ()
    assert report.features.shape == (4, 0)


def _report(name: str, error: BaseException | None) -> SelectionReport:
    return SelectionReport(
        features=pl.DataFrame({name: [1.0]}),
        selection=Selection((name,), {name: 0.5}),
        generators=[GeneratorRun("lag", "thread", 0.0, 1.0, 1, 1, "error", error)],
    )


@pytest.mark.parametrize(
    ("name", "error"),
    [("lag__x[/]", None), ("lag__w[b]", None), ("lag__x", ValueError("bad [/bold] value"))],
)
def test_rich_shows_names_and_errors_verbatim(name: str, error: BaseException | None) -> None:
    """Square brackets in feature names or errors are printed as text, not rich markup."""
    out = io.StringIO()
    rich.console.Console(file=out, width=200, color_system=None).print(_report(name, error))
    text = out.getvalue()
    assert name in text
    if error is not None:
        assert "bad [/bold] value" in text


@pytest.mark.parametrize(
    "selector", [CorrelationSelector(max_correlation=1.0), MutualInformationSelector()]
)
def test_infinities_count_as_missing_in_the_selectors(
    selector: CorrelationSelector | MutualInformationSelector,
) -> None:
    """One inf in a feature or the target is skipped like NaN, not scoring everything 0."""
    n = 200
    target = pl.Series("y", [float(i % 17) for i in range(n)])
    good = [float(i % 17) + 0.1 * (i % 3) for i in range(n)]
    with_inf = list(good)
    with_inf[5] = math.inf
    features = pl.DataFrame({"good": good, "with_inf": with_inf, "noise": [0.0, 1.0] * (n // 2)})
    selection = selector.select(features, target, 2)
    assert set(selection.names) == {"good", "with_inf"}
    assert selection.scores["with_inf"] == pytest.approx(selection.scores["good"], rel=0.05)
    target_inf = target.clone()
    target_inf[3] = -math.inf
    assert set(selector.select(features, target_inf, 2).names) == {"good", "with_inf"}


def _script() -> list[str]:
    beside = Path(sys.executable).with_name("concur")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("concur")
    if found is None:
        pytest.skip("the concur console script is not installed")
    return [found]


def _error_line(*args: str) -> str:
    result = subprocess.run(
        [*_script(), "features", *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr.strip().splitlines()[-1]


def test_a_file_whose_only_numeric_column_is_the_target(tmp_path: Path) -> None:
    """A file with no numeric column besides target/entity/order uses the target's past.

    (It was an error until issue 10; tests/components/test_cli_edges.py covers the rest.)
    """
    path = tmp_path / "only_target.csv"
    pl.DataFrame({"name": ["a", "b", "c"], "e": [1, 2, 1], "y": [1.0, 2.0, 3.0]}).write_csv(path)
    result = subprocess.run(
        [*_script(), "features", str(path), "--target", "y", "--entity", "e", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "no numeric feature columns" in result.stderr
    assert "using the target's own past" in result.stderr
    generators = json.loads(result.stdout)["generators"]
    assert [g["name"] for g in generators] == ["autoregressive"]


def test_markup_in_a_column_name_prints_the_table(tmp_path: Path) -> None:
    """A CSV column named with rich markup characters is printed in the table, no crash."""
    path = tmp_path / "brackets.csv"
    pl.DataFrame(
        {"x[/]": [float(i % 5) for i in range(30)], "y": [float(i) for i in range(30)]}
    ).write_csv(path)
    result = subprocess.run(
        [*_script(), "features", str(path), "--target", "y", "--k", "3"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "x[/]" in result.stdout


def test_a_decimal_target_is_numeric(tmp_path: Path) -> None:
    """A Decimal target column (money in a Parquet file) is accepted as numeric."""
    path = tmp_path / "decimal.parquet"
    pl.DataFrame(
        {"x": [float(i % 5) for i in range(30)], "y": [float(i) for i in range(30)]}
    ).with_columns(pl.col("y").cast(pl.Decimal(10, 2))).write_parquet(path)
    result = subprocess.run(
        [*_script(), "features", str(path), "--target", "y", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["selected"]


def test_a_seed_out_of_range_is_a_usage_error() -> None:
    """A --seed too large for the generator exits 2 with one line, no traceback."""
    assert "argument --seed" in _error_line("--rows", "2000", "--seed", str(2**70))


def test_json_is_one_document_after_the_fixes(tmp_path: Path) -> None:
    """--format json still prints exactly one JSON document with the documented keys."""
    path = tmp_path / "ok.csv"
    pl.DataFrame(
        {"e": [1, 2] * 10, "t": list(range(20)), "x": [float(i % 7) for i in range(20)]}
    ).with_columns(y=pl.col("x") * 2).write_csv(path)
    result = subprocess.run(
        [
            *_script(),
            *("features", str(path), "--target", "y", "--entity", "e", "--order", "t"),
            *("--format", "json", "--backend", "trio"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"selected", "unsupported", "chance", "generators"}
    assert {g["name"] for g in document["generators"]} == {"lag", "rolling", "interaction", "sql"}
    assert not any(
        "__e_" in item["name"] or "__t_" in item["name"] for item in document["selected"]
    )


def test_lags_and_rolling_on_interleaved_unsorted_entities_by_hand() -> None:
    """Lags, differences and rolling stats follow entity and order and keep row alignment."""
    frame = pl.DataFrame(
        {
            "e": [1, 2, 1, 2, 1, 2, 1],
            "t": [3, 2, 1, 1, 2, 3, 4],
            "x": [30.0, 200.0, 10.0, 100.0, 20.0, 300.0, 40.0],
        }
    )
    lags = LagFeatures(entity="e", order="t", lags=(1,)).generate(frame)
    assert lags["lag__x_lag_1"].to_list() == [20.0, 100.0, None, None, 10.0, 200.0, 30.0]
    assert lags["lag__x_diff_1"].to_list() == [10.0, 100.0, None, None, 10.0, 100.0, 10.0]


@attrs.frozen(eq=False)
class _Stuck(FeatureGenerator):
    """An async generator that never finishes on its own."""

    name: str = "stuck"

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_scope_timeout_is_a_skippable_generator_error() -> None:
    """Under ``scope(timeout=)`` a generator that times out is recorded and skipped."""
    import concur

    fast = _Columns(name="fast", columns=("a",))
    with concur.scope(timeout=0.05):
        report = await select_best_features(
            _frame(),
            target="y",
            generators=[_Stuck(), fast],
            selector=CorrelationSelector(),
            k=1,
            on_error="skip",
        )
    outcomes = {run.name: (run.outcome, type(run.error)) for run in report.generators}
    assert outcomes == {"stuck": ("error", TimeoutError), "fast": ("ok", type(None))}


async def test_a_scope_timeout_fails_the_run_bare_under_fail() -> None:
    """Under ``scope(timeout=)`` and ``on_error="fail"`` the run raises a bare ``TimeoutError``."""
    import concur

    with concur.scope(timeout=0.05), pytest.raises(TimeoutError):
        await select_best_features(
            _frame(),
            target="y",
            generators=[_Stuck(), _Columns(name="fast", columns=("a",))],
            selector=CorrelationSelector(),
            k=1,
        )
