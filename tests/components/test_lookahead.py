"""No look-ahead: a generated value never depends on a later step of the panel.

Every generator the package ships is run on a panel whose rows are shuffled (time is the
``t`` column, not the row order), then on the same panel with one input changed at one
step; no generated value at an earlier step may change. A generator of features of the
target itself (an autoregressive one) must not change at the same step either.

To cover a new generator, add one line to ``CASES``.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import polars as pl
import pytest

from components import (
    AutoregressiveFeatures,
    FeatureGenerator,
    HttpLookupFeatures,
    InteractionFeatures,
    LagFeatures,
    RollingFeatures,
    SQLWindowFeatures,
)

ENTITIES = 4
STEPS = 12
KEYS = {"entity": "entity", "order": "t"}


@attrs.frozen
class Case:
    """One generator under test.

    Attributes:
        make: builds the generator, given the URL of a JSON server on 127.0.0.1 that
            answers ``/k/<key>`` with numbers computed from the key alone.
        perturb: the input columns changed, one step at a time.
        same_step: whether a value at the changed step itself may change (False for
            features of the target, which must be known before the target is).
    """

    make: Callable[[str], FeatureGenerator]
    perturb: tuple[str, ...] = ("x", "z")
    same_step: bool = True


CASES: dict[str, Case] = {
    "lag": Case(lambda url: LagFeatures(**KEYS)),
    "rolling": Case(lambda url: RollingFeatures(**KEYS)),
    "interaction": Case(lambda url: InteractionFeatures(**KEYS)),
    "sql": Case(lambda url: SQLWindowFeatures(**KEYS)),
    "http": Case(lambda url: HttpLookupFeatures(url=f"{url}/k/{{key}}", key="k"), ("k",)),
    "autoregressive": Case(
        lambda url: AutoregressiveFeatures(target="y", **KEYS), ("y",), same_step=False
    ),
}


def _panel() -> pl.DataFrame:
    """ENTITIES series of STEPS steps, rows shuffled; ``y`` stands for a target."""
    rng = random.Random(15)
    rows = [
        {
            "entity": entity,
            "t": step,
            "x": rng.gauss(0, 1),
            "z": rng.uniform(1, 2),
            "k": rng.randrange(5),
            "y": rng.gauss(0, 1),
        }
        for entity in range(ENTITIES)
        for step in range(STEPS)
    ]
    rng.shuffle(rows)
    frame = pl.DataFrame(rows)
    # one missing value, before the changed steps
    return frame.with_columns(
        pl.when((pl.col("entity") == 3) & (pl.col("t") == 1)).then(None).otherwise("x").alias("x")
    )


def _perturbed(frame: pl.DataFrame, column: str, entity: int, step: int) -> pl.DataFrame:
    at = (pl.col("entity") == entity) & (pl.col("t") == step)
    change = 1000 if frame.schema[column].is_integer() else 10.0
    return frame.with_columns(
        pl.when(at).then(pl.col(column) + change).otherwise(pl.col(column)).alias(column)
    )


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        key = float(self.path.rsplit("/", 1)[-1])
        body = json.dumps({"score": key * 10, "half": key / 2}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="lookahead-server"
    )
    thread.start()
    try:
        host, port = httpd.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.parametrize("name", list(CASES))
async def test_no_generated_value_depends_on_a_later_step(name: str, url: str) -> None:
    """Changing one input at one step changes no generated value at an earlier step."""
    case = CASES[name]
    generator = case.make(url)
    frame = _panel()
    try:
        base = await generator.agenerate(frame)
        for column in case.perturb:
            changed = False
            for entity, step in ((0, STEPS - 1), (1, 7), (2, 3), (3, 5)):
                out = await generator.agenerate(_perturbed(frame, column, entity, step))
                known = frame["t"] < step if case.same_step else frame["t"] <= step
                assert base.filter(known).equals(out.filter(known)), (
                    f"{name}: changing {column} at entity {entity}, step {step} changed a "
                    "value at an earlier step"
                )
                changed |= not base.equals(out)
            # the change must reach the generator, or the test proves nothing
            assert changed, f"{name}: changing {column} changed no generated value"
    finally:
        close = getattr(generator, "close", None)
        if close is not None:
            close()
