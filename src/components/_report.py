"""What a selection run reports: per-generator runs and the selected features."""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

import attrs
import polars as pl

from ._interfaces import Selection

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderableType

__all__ = ["GeneratorRun", "Kind", "Outcome", "SelectionReport"]

Kind: TypeAlias = Literal["async", "thread"]
"""How a generator ran: on the event loop, or in a worker thread."""

Outcome: TypeAlias = Literal["ok", "error", "cancelled"]
"""How a generator's run ended."""


@final
@attrs.frozen
class GeneratorRun:
    """One generator's run within :func:`components.select_best_features`.

    Attributes:
        name: the generator's name.
        kind: ``"thread"`` for a :class:`SyncFeatureGenerator` (its work ran in a worker
            thread), ``"async"`` otherwise (on the event loop).
        started: when it started, in seconds since the run began (monotonic clock); for
            a thread generator, when its thread began running (after any wait for a
            limiter token).
        ended: when it ended, likewise.
        rows: the rows it produced (0 unless ``outcome == "ok"``).
        columns: the feature columns it produced (0 unless ``outcome == "ok"``).
        outcome: ``"ok"``, ``"error"`` or ``"cancelled"``.
        error: the exception it raised, for ``"error"``; else None.
    """

    name: str
    kind: Kind
    started: float
    ended: float
    rows: int
    columns: int
    outcome: Outcome
    error: BaseException | None = attrs.field(default=None, eq=False)

    @property
    def seconds(self) -> float:
        """How long it ran."""
        return self.ended - self.started

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready summary: name, kind, seconds and outcome."""
        return {
            "name": self.name,
            "kind": self.kind,
            "seconds": round(self.seconds, 6),
            "outcome": self.outcome,
        }


def _as_runs(runs: Iterable[GeneratorRun]) -> tuple[GeneratorRun, ...]:
    return tuple(runs)


@final
@attrs.frozen(eq=False)
class SelectionReport:
    """The result of :func:`components.select_best_features`.

    Renders as tables in a terminal (with rich: ``rich.print(report)``) and as HTML with a
    timeline of the generators in a notebook.

    Attributes:
        features: the selected feature columns, best first, row-aligned with the input.
        selection: the selector's :class:`Selection` (names and every candidate's score).
        generators: one :class:`GeneratorRun` per generator, in the order given.
    """

    features: pl.DataFrame
    selection: Selection
    generators: tuple[GeneratorRun, ...] = attrs.field(converter=_as_runs)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready summary the command line prints with ``--format json``.

        ``unsupported`` is how many candidates were not scored for lack of rows shared with
        the target; ``chance`` the score a feature had to beat (null if the selector sets
        none).
        """
        return {
            "selected": [
                {"name": name, "score": self.selection.scores[name]}
                for name in self.selection.names
            ],
            "unsupported": len(self.selection.unsupported),
            "chance": self.selection.chance,
            "generators": [run.as_dict() for run in self.generators],
        }

    def _notes(self) -> list[str]:
        """What the tables do not show: candidates not scored, a selection below chance."""
        selection = self.selection
        notes: list[str] = []
        if selection.unsupported:
            count = len(selection.unsupported)
            notes.append(
                f"{count} candidate{'s' if count > 1 else ''} not scored: too few rows "
                "shared with the target"
            )
        if selection.chance is not None:
            if selection.names:
                notes.append(
                    f"chance level: {selection.chance:.4f} (every selected score beats it)"
                )
            elif selection.scores:
                notes.append(f"no feature beat chance (chance level {selection.chance:.4f})")
        if not selection.names and not selection.scores:
            notes.append("no feature was scored")
        elif not selection.names and selection.chance is None:
            notes.append("no feature selected")
        return notes

    def __rich_console__(
        self, console: Console, options: ConsoleOptions
    ) -> Iterator[RenderableType]:
        """Render as two rich tables: the selected features, and the generator runs."""
        from rich.table import Table
        from rich.text import Text

        # cells are Text, not str: rich would read brackets in a column name or an error
        # message as markup (and fail on "[/]")
        selected = Table(title="Selected features", title_justify="left")
        selected.add_column("#", justify="right")
        selected.add_column("feature")
        selected.add_column("score", justify="right")
        for rank, name in enumerate(self.selection.names, 1):
            selected.add_row(str(rank), Text(name), f"{self.selection.scores[name]:.4f}")
        yield selected
        for note in self._notes():
            yield Text(note)
        runs = Table(title="Generators", title_justify="left")
        for column in ("generator", "kind", "start s", "seconds", "rows", "columns", "outcome"):
            numeric = column in ("start s", "seconds", "rows", "columns")
            runs.add_column(column, justify="right" if numeric else "left")
        for run in self.generators:
            outcome = run.outcome if run.error is None else f"{run.outcome}: {run.error!r}"
            runs.add_row(
                Text(run.name),
                run.kind,
                f"{run.started:.3f}",
                f"{run.seconds:.3f}",
                str(run.rows),
                str(run.columns),
                Text(outcome),
            )
        yield runs

    def _repr_html_(self) -> str:
        """Render as HTML: the selected features, the runs and a timeline of them."""
        esc = html.escape
        rows = "".join(
            f"<tr><td>{rank}</td><td><code>{esc(name)}</code></td>"
            f"<td>{self.selection.scores[name]:.4f}</td></tr>"
            for rank, name in enumerate(self.selection.names, 1)
        )
        parts = [
            "<div class='concur-selection-report'>",
            "<h4>Selected features</h4>",
            "<table><thead><tr><th>#</th><th>feature</th><th>score</th></tr></thead>",
            f"<tbody>{rows}</tbody></table>",
            *(f"<p class='concur-note'>{esc(note)}</p>" for note in self._notes()),
            "<h4>Generators</h4>",
            "<table><thead><tr><th>generator</th><th>kind</th><th>start s</th>"
            "<th>seconds</th><th>rows</th><th>columns</th><th>outcome</th></tr></thead><tbody>",
        ]
        for run in self.generators:
            error = "" if run.error is None else f": {esc(repr(run.error))}"
            parts.append(
                f"<tr><td>{esc(run.name)}</td><td>{run.kind}</td><td>{run.started:.3f}</td>"
                f"<td>{run.seconds:.3f}</td><td>{run.rows}</td><td>{run.columns}</td>"
                f"<td>{run.outcome}{error}</td></tr>"
            )
        parts.append("</tbody></table>")
        parts.append(self._timeline_html())
        parts.append("</div>")
        return "".join(parts)

    def _timeline_html(self) -> str:
        esc = html.escape
        end = max((run.ended for run in self.generators), default=0.0) or 1.0
        colours = {"ok": "#4c9a2a", "error": "#c0392b", "cancelled": "#999999"}
        bars: list[str] = []
        for run in self.generators:
            left = 100.0 * run.started / end
            width = max(100.0 * run.seconds / end, 0.5)
            bars.append(
                "<div style='display:flex;align-items:center;margin:2px 0'>"
                f"<div style='width:10em;font-family:monospace'>{esc(run.name)}</div>"
                "<div style='position:relative;flex:1;height:1em;background:#eee'>"
                f"<div title='{esc(run.name)}: {run.seconds:.3f} s ({run.kind}, "
                f"{run.outcome})' style='position:absolute;left:{left:.2f}%;"
                f"width:{width:.2f}%;height:100%;background:{colours[run.outcome]}'></div>"
                "</div></div>"
            )
        return (
            f"<h4>Timeline (0 to {end:.3f} s)</h4>"
            f"<div class='concur-timeline'>{''.join(bars)}</div>"
        )
