"""Tests that every concur snippet of the docs' "coming from" page (and of core.rst) runs.

A snippet is a ``.. code-block:: python`` preceded by a comment ``.. concur-snippet: NAME``.
The snippet named ``preamble`` of a page runs before each of that page's snippets, in the
same namespace. A snippet defining ``async def main()`` runs on asyncio and on trio, inside
``anyio.fail_after(SNIPPET_BOUND)``; any other snippet is sync code, run as it is in a
thread joined with the same bound. Tracebacks show the snippet's lines at their line
numbers in the page.
"""

from __future__ import annotations

import inspect
import linecache
import re
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("migrating.rst", "core.rst")
SNIPPET_BOUND = 10.0  # seconds; each snippet takes well under 0.5 s

MARKER = re.compile(r"^\.\. concur-snippet: (?P<name>[a-z0-9-]+)\s*$")
CODE_BLOCK = re.compile(r"^\.\. code-block:: python\s*$")


@dataclass(frozen=True)
class Snippet:
    page: str
    name: str
    line: int  # the 1-based line number of the code's first line in the page
    code: str

    def compile(self) -> Any:
        # pad with blank lines so that tracebacks give the page's line numbers, and show
        # the source lines through linecache
        source = "\n" * (self.line - 1) + self.code
        filename = f"docs/{self.page} [{self.name}]"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        return compile(source, filename, "exec")


def parse_snippets(page: str) -> list[Snippet]:
    """The marked snippets of *page*, in order; a malformed marker raises ValueError."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    snippets: list[Snippet] = []
    i = 0
    while i < len(lines):
        match = MARKER.match(lines[i])
        i += 1
        if match is None:
            continue
        name = match["name"]
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i == len(lines) or not CODE_BLOCK.match(lines[i]):
            raise ValueError(f"{page}:{i + 1}: snippet {name!r} is not followed by a code-block")
        i += 1
        # options (":caption: ...") and the blank line before the code
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith(":")):
            if lines[i].strip() and not lines[i].startswith(" "):
                break
            i += 1
        start = i
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            i += 1
        body = "\n".join(lines[start:i]).rstrip() + "\n"
        if not body.strip():
            raise ValueError(f"{page}:{start + 1}: snippet {name!r} is empty")
        snippets.append(Snippet(page, name, start + 1, textwrap.dedent(body)))
    names = [s.name for s in snippets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{page}: snippet names used twice: {duplicates}")
    return snippets


def _preamble(page: str) -> Snippet | None:
    return next((s for s in parse_snippets(page) if s.name == "preamble"), None)


def _cases() -> list[Any]:
    cases = []
    for page in PAGES:
        for snippet in parse_snippets(page):
            if snippet.name == "preamble":
                continue
            if re.search(r"^async def main\(", snippet.code, re.MULTILINE):
                cases.extend(
                    pytest.param(snippet, backend, id=f"{page}:{snippet.name}-{backend}")
                    for backend in ("asyncio", "trio")
                )
            else:
                cases.append(pytest.param(snippet, None, id=f"{page}:{snippet.name}-sync"))
    return cases


def _namespace(snippet: Snippet) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"snippet_{snippet.name.replace('-', '_')}"}
    preamble = _preamble(snippet.page)
    if preamble is not None:
        exec(preamble.compile(), namespace)
    return namespace


def _run_sync(snippet: Snippet) -> None:
    errors: list[BaseException] = []

    def body() -> None:
        try:
            exec(snippet.compile(), _namespace(snippet))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=body, name=f"snippet {snippet.name}", daemon=True)
    thread.start()
    thread.join(SNIPPET_BOUND)
    if thread.is_alive():
        pytest.fail(f"snippet {snippet.name!r} still running after {SNIPPET_BOUND} s")
    if errors:
        raise errors[0]


def _run_async(snippet: Snippet, backend: str) -> None:
    namespace = _namespace(snippet)
    exec(snippet.compile(), namespace)
    main = namespace.get("main")
    assert inspect.iscoroutinefunction(main), f"snippet {snippet.name!r}: main is not async"

    async def bounded() -> None:
        with anyio.fail_after(SNIPPET_BOUND):
            await main()

    anyio.run(bounded, backend=backend)


@pytest.mark.parametrize(("snippet", "backend"), _cases())
def test_snippet_runs(snippet: Snippet, backend: str | None) -> None:
    """A marked concur snippet runs to its end without an error or a warning."""
    try:
        if backend is None:
            _run_sync(snippet)
        else:
            _run_async(snippet, backend)
    except BaseException as exc:
        where = f"docs/{snippet.page}:{snippet.line}"
        raise AssertionError(
            f"snippet {snippet.name!r} ({where}) failed on {backend or 'sync'}: {exc!r}"
        ) from exc


def test_every_concur_code_block_is_run() -> None:
    """Each python code-block that uses concur on the migrating page is a marked snippet."""
    lines = (DOCS / "migrating.rst").read_text(encoding="utf-8").splitlines()
    unmarked = []
    for i, line in enumerate(lines):
        if not CODE_BLOCK.match(line):
            continue
        previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        if MARKER.match(previous):
            continue
        block = []
        for following in lines[i + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            block.append(following)
        if re.search(r"\bconcur\.|\bstreams\.", "\n".join(block)):
            unmarked.append(i + 1)
    assert unmarked == [], f"code-blocks using concur without a marker, at lines {unmarked}"


def test_the_pages_have_snippets() -> None:
    """The parser finds the snippets: a preamble and at least twenty on the migrating page."""
    snippets = parse_snippets("migrating.rst")
    assert snippets[0].name == "preamble"
    assert len(snippets) > 20
    assert [s.name for s in parse_snippets("core.rst")] == ["core-task-handles"]
