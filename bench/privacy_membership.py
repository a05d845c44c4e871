"""Membership inference: our loss-threshold and LiRA-offline shadow attacks against ART's
MembershipInferenceBlackBox, on the same targets in one process.

Targets (issue 4): RandomForest(100) that overfits (train 1.00, test about 0.90) and an MLP(256, 256)
(scikit-learn ``MLPClassifier``), both on ``make_classification(4000, 20 features, 8 informative,
flip_y=0.1)`` split in halves (2,000 training rows = members, 2,000 held-out rows = non-members).

ART's attack is supervised: it is *given* half of the members and half of the non-members with their
membership to train its attack model (``rf``, ``gb``, ``nn``; input ``prediction``), and is evaluated on
the other halves. Our attacks need no membership labels. They are run twice: on exactly ART's evaluation
halves (``X`` = evaluation members, ``X_test`` = evaluation non-members, so the shadow models only see
those rows), with the default shadow pool (``"all"``: members join the pool, as in the LiRA paper) and
with ``shadow_pool="held_out"`` (held-out rows only), and on all rows with the default pool. Every AUC / TPR is computed by the same code
(``membership.attack_metrics``). Usage: ``python bench/privacy_membership.py [--seed 0] [--shadows 8]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from _results import cell, demote, markdown_table, write_section
from _results import machine as _machine

from mlsec_jupyter.checks.budget import Budget
from mlsec_jupyter.checks.privacy import membership as M
from mlsec_jupyter.checks.registry import run_check

GOAL = "our best AUC ≥ ART's best AUC on the same target, in one run"


def machine() -> str:
    import art
    import sklearn
    import torch

    return _machine(f"scikit-learn {sklearn.__version__}, torch {torch.__version__}, ART {art.__version__}")


def data(seed: int):
    from sklearn.datasets import make_classification
    from sklearn.model_selection import train_test_split

    X, y = make_classification(n_samples=4000, n_features=20, n_informative=8, flip_y=0.1, random_state=seed)
    return train_test_split(X, y, test_size=0.5, random_state=seed)


def targets(seed: int):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neural_network import MLPClassifier

    return {"RandomForest(100)": RandomForestClassifier(100, random_state=seed),
            "MLP(256,256)": MLPClassifier((256, 256), max_iter=200, random_state=seed)}


def row(target: str, method: str, member_scores, nonmember_scores, seconds: float, rows: str) -> dict:
    m = M.attack_metrics(member_scores, nonmember_scores)
    return {"target": target, "method": method, "rows (members/non-members)": rows,
            "auc": m["auc"], "auc 95% CI": f"{m['auc_ci'][0]:.3f}–{m['auc_ci'][1]:.3f}",
            "tpr@1%fpr": m["tpr_at_1pct_fpr"], "tpr@0.1%fpr": m["tpr_at_0_1pct_fpr"],
            "eps_lb": m["epsilon_lower_bound"], "seconds": seconds}


def art_rows(target: str, model, Xa, ya, Xa_out, ya_out, Xe, ye, Xe_out, ye_out) -> list[dict]:
    from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
    from art.estimators.classification.scikitlearn import ScikitlearnClassifier

    est = ScikitlearnClassifier(model=model)
    out = []
    for kind in ("rf", "gb", "nn"):
        t0 = time.perf_counter()
        attack = MembershipInferenceBlackBox(est, input_type="prediction", attack_model_type=kind)
        attack.fit(Xa, ya, Xa_out, ya_out)
        pm = np.asarray(attack.infer(Xe, ye, probabilities=True), dtype=float).reshape(len(Xe), -1)[:, -1]
        pn = np.asarray(attack.infer(Xe_out, ye_out, probabilities=True), dtype=float).reshape(len(Xe_out), -1)[:, -1]
        out.append(row(target, f"ART black-box ({kind})", pm, pn, time.perf_counter() - t0,
                       f"{len(Xe)}/{len(Xe_out)}"))
    return out


def ours(target: str, model, X, y, Xo, yo, n_shadow: int, label: str, pool: str = "all") -> list[dict]:
    t0 = time.perf_counter()
    findings = run_check("privacy.membership", model=model, X=X, y=y, X_test=Xo, y_test=yo, framework="sklearn",
                         n_shadow=n_shadow, shadow_pool=pool, budget=Budget(seconds=900))
    total = time.perf_counter() - t0
    main = findings[0]
    out = []
    for name, m in main.metrics["attacks"].items():
        out.append({"target": target, "method": f"mlsec {name} ({label})",
                    "rows (members/non-members)": f"{m['n_members']}/{m['n_nonmembers']}",
                    "auc": m["auc"], "auc 95% CI": f"{m['auc_ci'][0]:.3f}–{m['auc_ci'][1]:.3f}",
                    "tpr@1%fpr": m["tpr_at_1pct_fpr"], "tpr@0.1%fpr": m["tpr_at_0_1pct_fpr"],
                    "eps_lb": m["epsilon_lower_bound"], "seconds": m["seconds"]})
    out.append({"target": target, "method": f"mlsec check total ({label}; severity {main.severity.label})",
                "seconds": total})
    return out


COLUMNS = ["target", "method", "rows (members/non-members)", "auc", "auc 95% CI", "tpr@1%fpr", "tpr@0.1%fpr",
           "eps_lb", "seconds"]


def table(rows: list[dict]) -> str:
    return markdown_table(rows, COLUMNS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shadows", type=int, default=M.N_SHADOW)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--only", choices=["rf", "mlp"], help="one target only (does not write RESULTS.md)")
    args = parser.parse_args()
    Xtr, Xte, ytr, yte = data(args.seed)
    half = len(Xtr) // 2
    rows: list[dict] = []
    verdicts = []
    for name, model in targets(args.seed).items():
        if args.only and not name.lower().startswith(args.only):
            continue
        t0 = time.perf_counter()
        model.fit(Xtr, ytr)
        fit_s = time.perf_counter() - t0
        acc = f"train {model.score(Xtr, ytr):.3f}, test {model.score(Xte, yte):.3f}, fit {fit_s:.1f} s"
        print(f"{name}: {acc}", flush=True)
        part = art_rows(name, model, Xtr[:half], ytr[:half], Xte[:half], yte[:half],
                        Xtr[half:], ytr[half:], Xte[half:], yte[half:])
        part += ours(name, model, Xtr[half:], ytr[half:], Xte[half:], yte[half:], args.shadows, "ART's eval rows")
        part += [r for r in ours(name, model, Xtr[half:], ytr[half:], Xte[half:], yte[half:], args.shadows,
                                 "ART's eval rows", pool="held_out") if "held-out pool" in r["method"]]
        part += ours(name, model, Xtr, ytr, Xte, yte, args.shadows, "all rows")
        for r in part:
            print("  " + "  ".join(f"{k}={cell(v)}" for k, v in r.items() if k != "target"), flush=True)
        rows += part
        art_best = max(r["auc"] for r in part if r["method"].startswith("ART"))
        same = [r for r in part if "ART's eval rows" in r["method"] and "auc" in r]
        default = max(r["auc"] for r in same if "held-out pool" not in r["method"])
        held_out = max(r["auc"] for r in same if "held-out pool" in r["method"])
        our_all = max(r["auc"] for r in part if "(all rows)" in r["method"] and "auc" in r)
        verdicts.append(
            f"- {name} ({acc}): ART best AUC {art_best:.3f}. Ours on ART's evaluation rows: {default:.3f} with the "
            f"default shadow pool (goal {'met' if default >= art_best else 'MISSED'}), {held_out:.3f} with "
            f"shadow_pool='held_out'; {our_all:.3f} on all rows "
            f"(default pool).")
    report = (f"# Membership inference (bench/privacy_membership.py)\n\nMachine: {machine()}. Seed {args.seed}, "
              f"{args.shadows} shadow models.\n\nData: make_classification(4000, 20 features, 8 informative, "
              f"flip_y=0.1), halves = members / non-members. ART's attack trains on half of each (with membership "
              f"labels) and is scored on the other halves; ours needs no membership labels. Goal: {GOAL}.\n\n"
              + "\n".join(verdicts) + "\n\n" + table(rows) + "\n\nAUC, TPR at 1 % / 0.1 % FPR (best ROC point at "
              "or below that FPR, no interpolation) and the ε lower bound (δ=1e-5, 95 % Clopper–Pearson) are "
              "computed by the same function for every method. With 1,000 non-members, FPR 0.1 % means at most "
              "one false positive.")
    print(report)
    if not args.no_write and not args.only:
        write_section(args.out, "privacy-membership", demote(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
