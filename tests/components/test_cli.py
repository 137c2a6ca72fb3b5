"""The ``concur features`` command line, run through its entry point in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from components import PLANTED_FEATURES, LagFeatures, make_dataset
from components._cli import main

ROWS = "4000"


def _script() -> list[str]:
    beside = Path(sys.executable).with_name("concur")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("concur")
    if found is None:
        pytest.skip("the concur console script is not installed")
    return [found]


def _run(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "components"] if module else _script()
    return subprocess.run(
        [*command, "features", *args], capture_output=True, text=True, timeout=240, check=False
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.parquet"
    make_dataset(3_000, entities=3).rename({"target": "y"}).write_parquet(path)
    return path


def test_json_on_the_built_in_data_is_one_document_on_stdout() -> None:
    """``--format json`` prints exactly one JSON document; notices go to stderr."""
    result = _run("--rows", ROWS, "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"selected", "unsupported", "chance", "generators"}
    names = [item["name"] for item in document["selected"]]
    assert len(names) == 20
    assert set(PLANTED_FEATURES) <= set(names)
    assert all(set(item) == {"name", "score"} for item in document["selected"])
    gens = document["generators"]
    assert [g["name"] for g in gens] == ["lag", "rolling", "interaction", "sql"]
    assert all(set(g) == {"name", "kind", "seconds", "outcome"} for g in gens)
    assert all(g["outcome"] == "ok" and g["kind"] == "thread" for g in gens)
    assert "built-in data set" in result.stderr


def test_table_output_on_trio_via_python_m() -> None:
    """``python -m components`` on trio prints the tables of features and generators."""
    result = _run("--rows", ROWS, "--k", "3", "--backend", "trio", "--threads", "1", module=True)
    assert result.returncode == 0, result.stderr
    assert "Selected features" in result.stdout
    assert "Generators" in result.stdout
    assert "interaction__x3_mul_x4" in result.stdout


def test_a_user_file_with_entity_and_order(data_file: Path) -> None:
    """A Parquet file with --target, --entity and --order runs, here with mutual information."""
    result = _run(
        str(data_file),
        "--target",
        "y",
        "--entity",
        "entity",
        "--order",
        "order",
        "--k",
        "5",
        "--selector",
        "mutual-info",
        "--on-error",
        "skip",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    names = [item["name"] for item in json.loads(result.stdout)["selected"]]
    assert len(names) == 5
    assert not any(name.endswith(("entity_lag_1", "order_lag_1")) for name in names)


def test_a_csv_file_without_keys(tmp_path: Path) -> None:
    """A CSV file is one entity in file order when --entity and --order are not given."""
    path = tmp_path / "small.csv"
    pl.DataFrame(
        {"a": [1.0, 2.0, 3.0, 5.0, 8.0], "b": [1, 0, 1, 0, 1], "y": [2, 4, 6, 9, 17]}
    ).write_csv(path)
    result = _run(str(path), "--target", "y", "--k", "2", "--format", "json", "--min-rows", "2")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["selected"]) == 2


def test_min_rows_reaches_the_selector(tmp_path: Path) -> None:
    """--min-rows above the file's rows leaves every candidate unscored, and says so."""
    path = tmp_path / "small.csv"
    pl.DataFrame(
        {"a": [1.0, 2.0, 3.0, 5.0, 8.0], "b": [1, 0, 1, 0, 1], "y": [2, 4, 6, 9, 17]}
    ).write_csv(path)
    result = _run(str(path), "--target", "y", "--format", "json", "--min-rows", "50")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["selected"] == []
    assert document["unsupported"] > 0


def test_no_progress_bars_when_stderr_is_not_a_terminal() -> None:
    """Piped stderr (CI, a test) carries notices only: no bars, no "running" lines."""
    result = _run("--rows", ROWS, "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "running" not in result.stderr
    assert "━" not in result.stderr


def test_missing_file() -> None:
    """A missing file is one clear line on stderr and exit code 2."""
    line = _error_line(_run("/no/such/file.parquet", "--target", "y"))
    assert "no such file: /no/such/file.parquet" in line


def test_unreadable_file(tmp_path: Path) -> None:
    """A file that is not valid Parquet is reported as unreadable, exit code 2."""
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"this is not parquet")
    line = _error_line(_run(str(path), "--target", "y"))
    assert f"cannot read {path}" in line


def test_unsupported_file_type(tmp_path: Path) -> None:
    """A file that is neither Parquet nor CSV is refused, exit code 2."""
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"")
    assert "expected a .parquet or .csv file" in _error_line(_run(str(path), "--target", "y"))


def test_missing_target_column(data_file: Path) -> None:
    """A --target that is not a column is named in the error, exit code 2."""
    line = _error_line(_run(str(data_file), "--target", "price"))
    assert "--target price: no column 'price'" in line


def test_target_required_with_a_path(data_file: Path) -> None:
    """With PATH, --target is required."""
    assert "--target COL is required" in _error_line(_run(str(data_file)))


def test_non_numeric_target(tmp_path: Path) -> None:
    """A text target column is refused, exit code 2."""
    path = tmp_path / "text.csv"
    pl.DataFrame({"a": [1.0, 2.0], "y": ["u", "v"]}).write_csv(path)
    line = _error_line(_run(str(path), "--target", "y"))
    assert "must be numeric" in line


def test_missing_entity_column(data_file: Path) -> None:
    """An --entity that is not a column is named in the error."""
    line = _error_line(_run(str(data_file), "--target", "y", "--entity", "who"))
    assert "--entity who: no column 'who'" in line


@pytest.mark.parametrize("k", ["0", "-3", "many"])
def test_bad_k_is_a_usage_error(k: str) -> None:
    """--k below 1 or not a number exits 2 with the parser's message, no traceback."""
    result = _run("--k", k)
    line = _error_line(result)
    assert "argument --k" in line
    assert "usage:" in result.stderr


def test_bad_backend_is_a_usage_error() -> None:
    """An unknown backend is a usage error."""
    assert "argument --backend" in _error_line(_run("--backend", "curio"))


def _broken_generate(self: object, frame: pl.DataFrame) -> pl.DataFrame:
    raise RuntimeError("disk full")


def test_a_failing_generator_is_one_line_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A generator failing at run time is reported on one line, exit code 2, no traceback."""
    monkeypatch.setattr(LagFeatures, "generate", _broken_generate)
    assert main(["features", "--rows", "2000", "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert captured.err.strip().splitlines()[-1] == (
        "concur features: error: RuntimeError: disk full"
    )


def test_skip_reports_the_failing_generator_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --on-error skip the failure is an outcome in the JSON and the others are used."""
    monkeypatch.setattr(LagFeatures, "generate", _broken_generate)
    assert main(["features", "--rows", "2000", "--format", "json", "--on-error", "skip"]) == 0
    document = json.loads(capsys.readouterr().out)
    outcomes = {g["name"]: g["outcome"] for g in document["generators"]}
    assert outcomes == {"lag": "error", "rolling": "ok", "interaction": "ok", "sql": "ok"}
    assert not any(item["name"].startswith("lag__") for item in document["selected"])


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
    assert "argument --seed" in _error_line(_run("--rows", "2000", "--seed", str(2**70)))


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
