"""bench/RESULTS.md holds one section per benchmark script; each script rewrites only its own."""

from __future__ import annotations

from pathlib import Path

HEADER = ("# mlsec-jupyter benchmarks\n\n"
          "Each section is written by its script; `make bench` runs them all. Goals come from DESIGN.md "
          "and the issues; a missed goal is reported, never a failure.\n")


def write_section(path: Path, name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of the results file with ``markdown``."""
    begin, end = f"<!-- section {name}: begin -->", f"<!-- section {name}: end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def demote(markdown: str) -> str:
    """Turn a standalone report (``#`` title, ``##`` parts) into a section (``##``, ``###``)."""
    return "\n".join("#" + line if line.startswith("#") else line for line in markdown.splitlines())
