"""Backdoor benchmark: BadNets 2×2 patch, and a noisy blended trigger, on 5 % of digits, relabelled 0.

Ours (``data.backdoor``, data only and with the fitted model) against ART's ActivationDefence and SpectralSignatureDefense
(their defaults, on a 64-128-10 torch MLP wrapped in ART's PyTorchClassifier) and our own
representation kernels (``spectral_suspects`` / ``activation_clusters`` in
``mlsec_jupyter.checks.data.backdoor``) on the same MLP's penultimate layer.

``rows(seed)`` returns one dict per method (dataset, method, f1, precision, recall, seconds);
run standalone for a markdown report: ``python bench/_poison_backdoor.py [--seed 0]``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

POISON_RATE = 0.05
TARGET = 0
PATCH = (slice(6, 8), slice(6, 8))  # bottom-right 2×2 of the 8×8 image
PATCH_VALUE = 16.0  # the maximum pixel value of digits


def stamp(X: np.ndarray) -> np.ndarray:
    """A copy of flat 8×8 digits rows with the trigger patch set to the maximum value."""
    img = np.array(X, dtype=np.float64).reshape(len(X), 8, 8)
    img[:, PATCH[0], PATCH[1]] = PATCH_VALUE
    return img.reshape(len(X), 64)


def poisoned_digits(seed: int = 0):
    """Train/test split of digits with 5 % of the training rows stamped and relabelled to 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    rng = np.random.default_rng(seed)
    n_poison = int(round(POISON_RATE * len(X_tr)))
    poison = np.sort(rng.choice(np.flatnonzero(y_tr != TARGET), n_poison, replace=False))
    X_tr, y_tr = X_tr.copy(), y_tr.copy()
    X_tr[poison] = stamp(X_tr[poison])
    y_tr[poison] = TARGET
    truth = np.zeros(len(X_tr), dtype=bool)
    truth[poison] = True
    return X_tr, y_tr, X_te, y_te, truth


def _mlp(seed: int):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))


def train_mlp(X: np.ndarray, y: np.ndarray, seed: int = 0, epochs: int = 60):
    """A 64-128-10 MLP on pixels scaled to [0, 1] (Adam, mini-batches of 64)."""
    import torch

    model = _mlp(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt = torch.tensor(X / 16.0, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: one thread is 3x faster than two on this machine
    try:
        for _ in range(epochs):
            for batch in torch.randperm(len(xt), generator=gen).split(64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _predict(model, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor(X / 16.0, dtype=torch.float32)).argmax(1).numpy()


def _penultimate(model, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model[:2](torch.tensor(X / 16.0, dtype=torch.float32)).numpy().astype(np.float64)


def _scores(flags: np.ndarray, truth: np.ndarray) -> dict:
    tp = int(np.sum(flags & truth))
    precision = tp / max(int(flags.sum()), 1)
    recall = tp / max(int(truth.sum()), 1)
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    return {"f1": f1, "precision": precision, "recall": recall}


def _timed(name: str, fn, truth: np.ndarray) -> dict:
    t0 = time.perf_counter()
    flags = np.asarray(fn(), dtype=bool)
    seconds = time.perf_counter() - t0
    return {"dataset": "digits", "method": name, **_scores(flags, truth), "seconds": seconds,
            "flagged": int(flags.sum())}


def blended_digits(seed: int = 0):
    """The same rows as :func:`poisoned_digits`, poisoned with a noisy blended trigger instead:
    0.8·x + 0.2·pattern + N(0, 0.3²) (pattern uniform in [0, 16]); no pixel is a constant."""
    truth = poisoned_digits(seed)[4]  # the same rows, stamped there
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y, random_state=seed)
    rng = np.random.default_rng(100 + seed)
    pattern = rng.uniform(0, PATCH_VALUE, X.shape[1])
    poison = np.flatnonzero(truth)
    X_tr, y_tr = X_tr.copy(), y_tr.copy()
    X_tr[poison] = 0.8 * X_tr[poison] + 0.2 * pattern + rng.normal(0, 0.3, (len(poison), X.shape[1]))
    y_tr[poison] = TARGET
    return X_tr, y_tr, X_te, y_te, truth, lambda Z: 0.8 * Z + 0.2 * pattern


VARIANTS = {
    "digits, 2×2 patch": lambda seed: (*poisoned_digits(seed), stamp),
    "digits, noisy blend": blended_digits,
}


def rows(seed: int = 0) -> list[dict]:
    """One row per method and trigger; the first row of each trigger carries the attack's success rate."""
    out: list[dict] = []
    for name, make in VARIANTS.items():
        out += _variant_rows(name, *make(seed), seed)
    return out


def _variant_rows(name, X_tr, y_tr, X_te, y_te, truth, trigger, seed: int) -> list[dict]:
    import warnings

    import torch

    import mlsec_jupyter as mj
    from mlsec_jupyter.checks.data.backdoor import (
        activation_clusters,
        spectral_suspects,
    )

    t0 = time.perf_counter()
    model = train_mlp(X_tr, y_tr, seed)
    train_seconds = time.perf_counter() - t0
    clean_acc = float(np.mean(_predict(model, X_te) == y_te))
    others = y_te != TARGET
    asr = float(np.mean(_predict(model, trigger(X_te[others])) == TARGET))

    def ours(**extra):
        def run():
            flags = np.zeros(len(X_tr), dtype=bool)
            X = X_tr / 16.0 if extra else X_tr  # the model eats pixels in [0, 1]
            for f in mj.run_check("data.backdoor", X=X, y=y_tr, **extra):
                if f.severity.label in ("medium", "high", "critical"):
                    flags[list(f.indices)] = True
            return flags
        return run

    def timed(method, fn):
        return dict(_timed(method, fn, truth), dataset=name)

    out = [timed("ours: data.backdoor (data only)", ours()),
           timed("ours: data.backdoor with the fitted model", ours(model=model))]
    reps = _penultimate(model, X_tr)
    out.append(timed("ours: spectral kernel, penultimate, ε=0.33 (ART default)",
                     lambda: spectral_suspects(reps, y_tr, eps=0.33)))
    out.append(timed("ours: activation clustering kernel, penultimate",
                     lambda: activation_clusters(reps, y_tr, seed=seed)[0]))

    try:
        from art.defences.detector.poison import (
            ActivationDefence,
            SpectralSignatureDefense,
        )
        from art.estimators.classification import PyTorchClassifier
    except ImportError as exc:  # ART is a bench-only dependency
        out.append({"dataset": name, "method": f"ART not installed ({exc})"})
    else:
        classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                                       optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
                                       input_shape=(64,), nb_classes=10, clip_values=(0.0, 1.0))
        x_art = (X_tr / 16.0).astype(np.float32)
        y_art = np.eye(10, dtype=np.float32)[y_tr]

        def art(defence):
            def run():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _, is_clean = defence(classifier, x_art, y_art).detect_poison()
                return np.asarray(is_clean) == 0
            return run

        out.append(timed("ART ActivationDefence (defaults)", art(ActivationDefence)))
        out.append(timed("ART SpectralSignatureDefense (defaults)", art(SpectralSignatureDefense)))
    out[0].update(attack_success=asr, clean_accuracy=clean_acc, train_seconds=train_seconds,
                  n_poisoned=int(truth.sum()), n_train=len(truth))
    return out


def markdown(result: list[dict], seed: int) -> str:
    lines = []
    for name in dict.fromkeys(r["dataset"] for r in result):
        part = [r for r in result if r["dataset"] == name]
        first = part[0]
        lines += [f"## Backdoor: {name} on 5 % of digits training rows, relabelled 0 (seed {seed})", "",
                  f"{first['n_poisoned']} of {first['n_train']} training rows poisoned; 64-128-10 MLP trained in "
                  f"{first['train_seconds']:.1f} s: clean test accuracy {first['clean_accuracy']:.3f}, attack "
                  f"success {first['attack_success']:.3f} (triggered test images of other classes predicted 0).",
                  "", "| method | F1 | precision | recall | flagged | seconds |", "|---|---|---|---|---|---|"]
        for r in part:
            if "f1" not in r:
                lines.append(f"| {r['method']} | | | | | |")
                continue
            lines.append(f"| {r['method']} | {r['f1']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                         f"{r['flagged']} | {r['seconds']:.3f} |")
        lines.append("")
    lines += ["Goal: F1 ≥ 0.8 on the poisoned rows."]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(markdown(rows(args.seed), args.seed))
