"""The selection report: JSON summary, rich tables and notebook HTML with a timeline."""

from __future__ import annotations

import io

import polars as pl
import pytest
import rich.console

from components import GeneratorRun, Selection, SelectionReport


def _report() -> SelectionReport:
    return SelectionReport(
        features=pl.DataFrame({"lag__x_lag_1": [1.0, 2.0]}),
        selection=Selection(("lag__x_lag_1",), {"lag__x_lag_1": 0.75, "sql__x": 0.1}),
        generators=[
            GeneratorRun("lag", "thread", 0.0, 0.5, 2, 1, "ok"),
            GeneratorRun("<web>", "async", 0.1, 0.2, 0, 0, "error", ValueError("boom")),
        ],
    )


def test_as_dict_is_the_documented_json_shape() -> None:
    """as_dict() gives the selected names with scores and each generator's summary."""
    assert _report().as_dict() == {
        "selected": [{"name": "lag__x_lag_1", "score": 0.75}],
        "unsupported": 0,
        "chance": None,
        "generators": [
            {"name": "lag", "kind": "thread", "seconds": 0.5, "outcome": "ok"},
            {"name": "<web>", "kind": "async", "seconds": 0.1, "outcome": "error"},
        ],
    }


def test_rich_renders_the_selection_and_the_runs() -> None:
    """Printed with rich, the report shows the features, scores, generators and errors."""
    out = io.StringIO()
    console = rich.console.Console(file=out, width=120, color_system=None)
    console.print(_report())
    text = out.getvalue()
    for expected in ("Selected features", "lag__x_lag_1", "0.7500", "Generators", "thread"):
        assert expected in text
    assert "ValueError('boom')" in text


def test_html_has_tables_and_an_escaped_timeline() -> None:
    """The notebook HTML holds both tables and a timeline, with names escaped."""
    html = _report()._repr_html_()
    assert "<table>" in html
    assert "Timeline" in html
    assert "&lt;web&gt;" in html
    assert "<web>" not in html
    assert "left:20.00%" in html  # the async run started at 0.1 s of 0.5 s


def test_generator_run_seconds() -> None:
    """A run's duration is its end minus its start."""
    assert GeneratorRun("g", "async", 1.0, 3.5, 1, 1, "ok").seconds == 2.5


def _report_of(name: str, error: BaseException | None) -> SelectionReport:
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
    rich.console.Console(file=out, width=200, color_system=None).print(_report_of(name, error))
    text = out.getvalue()
    assert name in text
    if error is not None:
        assert "bad [/bold] value" in text
