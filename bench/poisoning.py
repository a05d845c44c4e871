"""Poisoning detectors against their peers, in one run: label flips (cleanlab, kNN), injected
outliers (isolation forest) and backdoors (ART), with F1/AUROC and time per method.

Each part lives in ``bench/_poison_<part>.py`` and exposes ``rows(seed) -> list[dict]``; this
script runs them all, prints one table per part and writes the ``poisoning`` section of
``bench/RESULTS.md``. Usage: ``python bench/poisoning.py [--seed 0] [--only labels|outliers|backdoor]``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from _results import cell, machine, write_section  # bench/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
PARTS = {
    "labels": ("_poison_labels", "Label flips: 10 % of labels flipped uniformly at random",
               "F1 ≥ the better of cleanlab and kNN on every dataset, in no more time than cleanlab"),
    "outliers": ("_poison_outliers", "Injected points (2 %)", "AUROC ≥ plain isolation forest"),
    "backdoor": ("_poison_backdoor", "Backdoor: 2×2 patch on 5 % of digits, relabelled 0", "F1 ≥ 0.8"),
}
COLUMNS = ["dataset", "method", "f1", "precision", "recall", "auroc", "seconds"]


def table(rows: list[dict]) -> str:
    columns = [c for c in COLUMNS if any(c in r for r in rows)]
    columns += sorted({k for r in rows for k in r} - set(columns))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(PARTS), action="append")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    sections = [f"## Poisoning detection (bench/poisoning.py)\n\nMachine: {machine()}. Seed {args.seed}. "
                "Times are wall-clock seconds of one run of each method on the same data in this process."]
    for key in args.only or PARTS:
        module_name, title, goal = PARTS[key]
        start = time.monotonic()
        print(f"[{key}] running {module_name} ...", flush=True)
        try:
            rows = importlib.import_module(module_name).rows(args.seed)
            body = table(rows)
        except ModuleNotFoundError as exc:
            body = f"not run: {exc}"
        print(f"[{key}] done in {time.monotonic() - start:.0f} s\n{body}\n", flush=True)
        sections.append(f"### {title}\n\nGoal: {goal}.\n\n{body}")
    write_section(args.out, "poisoning", "\n\n".join(sections))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
