"""Injected points (2 %): ``data.outliers`` against a plain isolation forest.

2 % extra points are injected into digits, breast_cancer and make_classification(20000, 40,
n_classes=5, n_informative=20), each labelled with a random class, in two styles:

* ``uniform``: uniformly in the per-feature [min, max] box of the clean data;
* ``gauss``: from an independent Gaussian with the clean data's per-feature mean and standard
  deviation, shifted by 3 standard deviations along a random direction (a cluster that matches the
  marginals roughly but not the joint structure).

Methods: ours (the check's scoring kernel, per class, flags = score > threshold) and a plain
``IsolationForest()`` (default parameters, global, random_state=0; flags = its ``predict`` == -1).
AUROC is of the continuous score; F1/precision/recall of the flags against the injected rows.
Usage: ``python bench/_poison_outliers.py [--seed 0]`` prints a markdown table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHARE = 0.02
SHIFT = 3.0


def datasets(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification

    return {
        "digits 1797×64": load_digits(return_X_y=True),
        "breast_cancer 569×30": load_breast_cancer(return_X_y=True),
        "make_classification 20000×40": make_classification(20000, 40, n_classes=5, n_informative=20,
                                                             random_state=seed),
    }


def inject(X: np.ndarray, y: np.ndarray, style: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X', y', is_injected)``: 2 % injected points appended, then all rows shuffled."""
    rng = np.random.default_rng(seed)
    n = int(round(SHARE * len(X)))
    if style == "uniform":
        P = rng.uniform(X.min(axis=0), X.max(axis=0), size=(n, X.shape[1]))
    else:
        u = rng.normal(size=X.shape[1])
        u /= np.linalg.norm(u)
        P = X.mean(axis=0) + X.std(axis=0) * (rng.normal(size=(n, X.shape[1])) + SHIFT * u)
    classes = np.unique(y)
    Xa = np.vstack([X, P])
    ya = np.concatenate([y, rng.choice(classes, size=n)])
    truth = np.r_[np.zeros(len(X), dtype=bool), np.ones(n, dtype=bool)]
    perm = rng.permutation(len(Xa))
    return Xa[perm], ya[perm], truth[perm]


def _prf(flags: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    tp = int(np.count_nonzero(flags & truth))
    precision = tp / max(int(flags.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def ours(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from mlsec_jupyter.checks.budget import Budget
    from mlsec_jupyter.checks.data.outliers import THRESHOLD, robust_standardise, score_rows

    scores, _, _ = score_rows(robust_standardise(X.astype(np.float64)), np.unique(y, return_inverse=True)[1],
                              Budget(seconds=600))
    return scores, scores > THRESHOLD


def plain_iforest(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(random_state=0).fit(X)
    return -forest.score_samples(X), forest.predict(X) == -1


def rows(seed: int = 0) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    out = []
    for name, (X0, y0) in datasets(seed).items():
        for style in ("uniform", "gauss"):
            X, y, truth = inject(X0, y0, style, seed)
            for method, func in (("ours (per-class IF + LOF)", ours), ("IsolationForest (plain)", plain_iforest)):
                start = time.perf_counter()
                scores, flags = func(X, y)
                seconds = time.perf_counter() - start
                out.append({"dataset": f"{name} +{style}", "method": method, **_prf(flags, truth),
                            "auroc": float(roc_auc_score(truth, scores)), "seconds": seconds})
    return out


def markdown(rows_: list[dict]) -> str:
    cols = ["dataset", "method", "auroc", "f1", "precision", "recall", "seconds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows_:
        lines.append("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Injected points: data.outliers vs plain isolation forest")
    parser.add_argument("--seed", type=int, default=0)
    print(markdown(rows(parser.parse_args().seed)))
