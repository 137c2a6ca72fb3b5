"""The ``concur`` command line at its edges: files nothing can be selected from, unreadable
CSV files, series with only a target, the default data set, and ``--version``."""

from __future__ import annotations

import importlib.metadata
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from components import DEFAULT_ROWS, PLANTED_FEATURES
from components._cli import main

PREFIX = "concur features: "


def _fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``concur features ARGS``; it must exit 2 with one error line, last on stderr."""
    assert main(["features", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert [line for line in lines if line.startswith(PREFIX + "error")] == lines[-1:], lines
    assert lines[-1].startswith(PREFIX + "error: ")
    return lines[-1]


def _succeeds(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict[str, Any], str]:
    """Run ``concur features ARGS --format json``; its JSON document and its stderr."""
    assert main(["features", *args, "--format", "json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def _csv(tmp_path: Path, text: str, name: str = "data.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_csv_with_a_header_and_no_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header without rows is reported as such, not as a non-numeric target."""
    path = _csv(tmp_path, "a,y\n")
    line = _fails(capsys, path, "--target", "y")
    assert line.endswith(f"{path} has a header but no rows: there is nothing to select from")


def test_a_target_column_with_no_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An entirely empty target column is named as empty, not as a String column."""
    path = _csv(tmp_path, "a,y\n1,\n2,\n3,\n")
    line = _fails(capsys, path, "--target", "y")
    assert "--target y: the target column is empty (no value in any of the 3 rows" in line
    assert "numeric" not in line


def test_a_text_target_names_its_first_non_numeric_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target with text in it is refused, showing the first value that is not a number."""
    path = _csv(tmp_path, "a,y\n1,2\n3,n/a\n4,5\n")
    line = _fails(capsys, path, "--target", "y")
    assert line.endswith(
        "the target column must be numeric, it is String "
        "(first non-numeric value: 'n/a', data row 2)"
    )


def test_a_one_row_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A one-row file says why nothing can be selected from it, exit code 2."""
    path = _csv(tmp_path, "a,y\n1,2\n")
    line = _fails(capsys, path, "--target", "y")
    assert f"{path} has only 1 row" in line
    assert "needs at least 2 rows" in line


def test_a_target_with_one_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows but a single usable target value (the rest null or NaN): exit code 2."""
    path = _csv(tmp_path, "a,y\n1,2.5\n2,\n3,NaN\n")
    line = _fails(capsys, path, "--target", "y")
    assert "--target y: only 1 of the 3 rows" in line


def test_a_constant_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A constant target says no feature can explain it, exit code 2."""
    path = _csv(tmp_path, "a,y\n1,5\n2,5\n3,\n4,5\n")
    line = _fails(capsys, path, "--target", "y")
    assert "--target y: the target is constant (5 in all 3 rows that have a value)" in line
    assert "nothing can be selected" in line


def test_an_empty_selection_gets_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the run selects nothing, stdout stays one JSON document and stderr says why."""
    path = _csv(tmp_path, "y\n1\n2\n")
    document, err = _succeeds(capsys, path, "--target", "y")
    assert document["selected"] == []
    notice = err.strip().splitlines()[-1]
    assert notice.startswith(PREFIX + "nothing selected: none of the 11 candidate features")
    assert "shares enough rows with 'y' to be scored" in notice


def test_a_selection_below_chance_gets_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mutual information on a target independent of the features: the notice says chance."""
    rng = random.Random(4)
    rows = "".join(f"{rng.gauss(0, 1):.4f},{rng.gauss(0, 1):.4f}\n" for _ in range(300))
    path = _csv(tmp_path, "x,y\n" + rows)
    document, err = _succeeds(capsys, path, "--target", "y", "--selector", "mutual-info")
    assert document["selected"] == []
    notice = err.strip().splitlines()[-1]
    assert notice.startswith(PREFIX + "nothing selected: none of the ")
    assert "scored features beat chance for 'y' (chance level " in notice


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a,y\n1,2\n"x\n', "not properly escaped"),
        ("a,y\n1,2\n3,4,5\n", "found more fields than defined"),
    ],
)
def test_an_unreadable_csv_is_one_balanced_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    """A CSV polars cannot parse is reported on one line, its quotes balanced."""
    path = _csv(tmp_path, text)
    line = _fails(capsys, path, "--target", "y")
    assert line.startswith(f"{PREFIX}error: cannot read {path}: ")
    assert expected in line
    assert line.count("`") % 2 == 0
    assert "infer_schema_length" not in line  # polars' hints for its Python API are dropped


def test_a_csv_column_with_a_decimal_after_the_first_100_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whole numbers followed, past polars' inference window, by a decimal still read."""
    rows = [f"{i},{i % 7}" for i in range(300)] + ["2.5,1.5"]
    path = _csv(tmp_path, "\n".join(["a,y", *rows]) + "\n")
    document, _ = _succeeds(capsys, path, "--target", "y", "--k", "2")
    assert document["selected"]


def _prices(tmp_path: Path) -> str:
    """A price-only series: prices per symbol and month, months interleaved."""
    rows = []
    for month in range(36):
        for symbol, base in (("AAA", 100.0), ("BBB", 50.0), ("CCC", 10.0)):
            price = base * (1 + 0.02 * month) + (month * 7 % 5) - 2
            rows.append(f"{symbol},{2021 + month // 12}-{month % 12 + 1:02d},{price:.2f}")
    return _csv(tmp_path, "\n".join(["symbol,month,price", *rows]) + "\n", "prices.csv")


def test_a_price_only_series_gets_autoregressive_features(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With only the target numeric, the target's own past per entity is used and selected."""
    path = _prices(tmp_path)
    document, err = _succeeds(
        capsys, path, "--target", "price", "--entity", "symbol", "--order", "month"
    )
    assert [g["name"] for g in document["generators"]] == ["autoregressive"]
    names = [item["name"] for item in document["selected"]]
    assert names
    assert all(name.startswith("autoregressive__price_") for name in names)
    assert "using the target's own past instead" in err
    assert "one series per 'symbol', in 'month' order" in err


def test_an_autoregressive_series_with_repeated_steps_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --entity, months repeat across symbols: one error line, exit code 2."""
    line = _fails(capsys, _prices(tmp_path), "--target", "price", "--order", "month")
    assert "share their step with another row" in line
    assert "month='2021-01'" in line


def test_autoregressive_flag_adds_the_target_past_to_the_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--autoregressive`` runs the target's past beside the four default generators."""
    path = tmp_path / "data.csv"
    pl.DataFrame(
        {"x": [float(i % 5) for i in range(40)], "y": [float(i) for i in range(40)]}
    ).write_csv(path)
    document, _ = _succeeds(capsys, str(path), "--target", "y", "--autoregressive")
    names = [g["name"] for g in document["generators"]]
    assert names == ["lag", "rolling", "interaction", "sql", "autoregressive"]


def test_the_default_data_set_is_the_stated_size_and_finds_the_planted_features(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``concur features`` with no file says its row count and selects the planted features."""
    document, err = _succeeds(capsys)
    assert f"built-in data set ({DEFAULT_ROWS:,} rows" in err
    assert set(PLANTED_FEATURES) <= {item["name"] for item in document["selected"][:3]}


def test_the_readme_shows_the_quick_start_output(capsys: pytest.CaptureFixture[str]) -> None:
    """The output README's Quick start shows is what ``concur features`` prints today."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    shown = section.split("```text\n", 1)[1].split("\n...\n```", 1)[0].splitlines()
    assert main(["features"]) == 0
    captured = capsys.readouterr()
    assert shown[0] == captured.err.splitlines()[0]
    table = shown[shown.index("Selected features") :]
    printed = [line.rstrip() for line in captured.out.splitlines()]
    assert printed[: len(table)] == table


@pytest.mark.parametrize("module", [False, True])
def test_version(module: bool) -> None:
    """``concur --version`` prints the installed version and exits 0."""
    script = Path(sys.executable).with_name("concur")
    if module or not script.exists():
        command = [sys.executable, "-m", "components"]
    else:
        command = [str(script)]
    result = subprocess.run(
        [*command, "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"concur {importlib.metadata.version('concur')}\n"
