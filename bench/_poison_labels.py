"""Label-flip benchmark: ``data.label_flips`` against cleanlab and plain kNN disagreement.

10 % of labels are flipped uniformly at random to a different class (``np.random.default_rng(seed)``)
on digits (1797×64), breast_cancer (569×30) and make_classification(20000, 40, 5 classes, 20
informative). Methods:

* ``ours``     — ``run_check("data.label_flips", X=X, y=y_noisy)``;
* ``cleanlab`` — ``cleanlab.filter.find_label_issues`` (default filter) on 5-fold
  ``cross_val_predict`` probabilities of StandardScaler + LogisticRegression;
* ``knn``      — plain kNN disagreement: a row is flagged when the majority label of its 10 nearest
  neighbours (standardised features, the row itself excluded) differs from its own.

Seconds include the cross-validation. Run standalone to print a markdown table:
``.venv/bin/python bench/_poison_labels.py [--seed N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RATE = 0.10


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits, make_classification

    return {
        "digits": load_digits(return_X_y=True),
        "breast_cancer": load_breast_cancer(return_X_y=True),
        "make_classification_20000x40": make_classification(20000, 40, n_classes=5, n_informative=20,
                                                            random_state=0),
    }


def flip_labels(y: np.ndarray, seed: int = 0, rate: float = RATE) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``y`` with ``rate`` of the rows moved to a different class chosen uniformly; and the truth mask."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    rows = rng.choice(len(y), size=int(round(rate * len(y))), replace=False)
    noisy = np.array(y, copy=True)
    for i in rows:
        noisy[i] = rng.choice(classes[classes != y[i]])
    truth = np.zeros(len(y), dtype=bool)
    truth[rows] = True
    return noisy, truth


def ours(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from mlsec_jupyter.checks.registry import run_check

    flagged = [i for f in run_check("data.label_flips", X=X, y=y) for i in f.indices]
    mask = np.zeros(len(y), dtype=bool)
    mask[flagged] = True
    return mask


def cleanlab(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        probs = cross_val_predict(model, X, y, cv=5, method="predict_proba")
    return np.asarray(find_label_issues(y, probs))


def knn(X: np.ndarray, y: np.ndarray, k: int = 10) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors
    from sklearn.preprocessing import StandardScaler

    Z = StandardScaler().fit_transform(X)
    _, ind = NearestNeighbors(n_neighbors=k).fit(Z).kneighbors()  # excludes the row itself
    codes = np.unique(y, return_inverse=True)[1].reshape(-1)
    votes = np.zeros((len(y), codes.max() + 1))
    for j in range(k):
        np.add.at(votes, (np.arange(len(y)), codes[ind[:, j]]), 1)
    return votes.argmax(axis=1) != codes


METHODS = {"ours": ours, "cleanlab": cleanlab, "knn": knn}


def _scores(truth: np.ndarray, flagged: np.ndarray) -> tuple[float, float, float]:
    tp = int(np.sum(truth & flagged))
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return f1, precision, recall


def rows(seed: int = 0) -> list[dict]:
    """One dict per (dataset, method): dataset, method, f1, precision, recall, seconds."""
    out = []
    for name, (X, y) in datasets().items():
        noisy, truth = flip_labels(y, seed)
        for method, func in METHODS.items():
            start = time.perf_counter()
            flagged = func(X, noisy)
            seconds = time.perf_counter() - start
            f1, precision, recall = _scores(truth, flagged)
            out.append({"dataset": name, "method": method, "f1": round(f1, 3), "precision": round(precision, 3),
                        "recall": round(recall, 3), "seconds": round(seconds, 3)})
    return out


def table(results: list[dict]) -> str:
    lines = ["| dataset | method | F1 | precision | recall | seconds |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['dataset']} | {r['method']} | {r['f1']:.3f} | {r['precision']:.3f} | "
                     f"{r['recall']:.3f} | {r['seconds']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ours(*datasets()["breast_cancer"])  # warm imports so the first timing is not an import
    print(table(rows(args.seed)))


if __name__ == "__main__":
    main()
