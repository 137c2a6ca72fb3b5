"""The Jupyter example runs headless, cell by cell, on a real ipykernel."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "examples" / "concur_in_jupyter.ipynb"


def test_the_jupyter_example_runs_without_an_error(tmp_path: Path) -> None:
    """Every cell of ``concur_in_jupyter.ipynb`` runs; then the kernel is down, no thread left."""
    before = set(threading.enumerate())
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    km = client.create_kernel_manager()

    async def execute() -> bool:
        # nbclient's async API needs asyncio: this sync test runs it on a loop of its own,
        # closed when asyncio.run returns (whatever backend the other tests use)
        await client.async_execute()  # raises CellExecutionError if a cell fails
        return bool(await km.is_alive())

    alive = asyncio.run(execute())
    assert not alive
    outputs = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.get("execution_count") for cell in outputs)
    errors = [o for cell in outputs for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    assert any("text/html" in o.get("data", {}) for cell in outputs for o in cell.outputs)
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert left == []
