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


def machine(versions: str = "") -> str:
    """CPU, cores, Python, optional library ``versions``, commit and time: the line every result states."""
    import datetime as _dt
    import os
    import platform
    import subprocess

    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")), "") if cpuinfo.exists() else ""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, check=False).stdout.strip()
    extra = f"; {versions}" if versions else ""
    return (f"{cpu or platform.processor()}, {os.cpu_count()} cores; Python {platform.python_version()}{extra}; "
            f"commit {commit}; {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC")


def cell(value: object) -> str:
    """A table cell: floats with three decimals (whole numbers from 100), ``None`` empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
