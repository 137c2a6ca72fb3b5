"""Write your own components and run them with the selection runner.

Run it with ``python docs/examples/components_demo.py``: a sync generator (polars work, in
a worker thread), an async one (it waits, as a network call would, on the event loop) and
the built-in ones, selected by correlation on a small built-in data set, on asyncio and on
trio.
"""

from __future__ import annotations

import anyio
import attrs
import polars as pl

import components
from components import FeatureGenerator, SyncFeatureGenerator


@attrs.frozen
class SquareFeatures(SyncFeatureGenerator):
    """A sync component: long polars work belongs in a thread, so implement ``generate``."""

    name: str = "square"
    columns: tuple[str, ...] = ("x1", "x2")

    def generate(self, frame: pl.DataFrame) -> pl.DataFrame:
        # runs in a worker thread, on a clone of the caller's frame: never shared state
        return frame.select([(pl.col(c) ** 2).alias(f"{c}_sq") for c in self.columns])


@attrs.frozen
class DelayedConstant(FeatureGenerator):
    """An async component: waiting belongs on the event loop, so implement ``agenerate``."""

    name: str = "delayed"
    value: float = 1.0

    async def agenerate(self, frame: pl.DataFrame) -> pl.DataFrame:
        await anyio.sleep(0.01)  # stands for a network call
        return pl.DataFrame({"constant": [self.value] * frame.height})


async def main() -> None:
    frame = components.make_dataset(20_000)
    with components.SQLWindowFeatures(entity="entity", order="order") as sql:
        report = await components.select_best_features(
            frame,
            target=components.TARGET,
            generators=[
                SquareFeatures(),
                DelayedConstant(),
                components.LagFeatures(entity="entity", order="order"),
                components.RollingFeatures(entity="entity", order="order"),
                components.InteractionFeatures(entity="entity", order="order"),
                sql,
            ],
            selector=components.CorrelationSelector(),
            k=5,
            thread_limit=2,
        )
    for run in report.generators:
        print(f"{run.name:<12} {run.kind:<7} {run.outcome:<3} {run.columns:>3} columns")
    print("selected:", ", ".join(report.selection.names))
    assert set(components.PLANTED_FEATURES) <= set(report.selection.names)


if __name__ == "__main__":
    anyio.run(main)
    anyio.run(main, backend="trio")
