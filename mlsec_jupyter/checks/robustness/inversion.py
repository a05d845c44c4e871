"""``model.inversion``: can a representative of each class be rebuilt from the model alone?

Model inversion (Fredrikson, Jha & Ristenpart, CCS 2015, "Model Inversion Attacks that Exploit
Confidence Information and Basic Countermeasures") starts from an uninformative input and follows
the gradient of the model's score for one class until the model is confident; on a face recogniser
the result looks like the person behind the class. This check runs that attack for every class and
measures how much each reconstruction looks like the real members of its class.

Attack (:func:`invert`)
-----------------------
* Start: the mean of the training rows (every class starts from the same, class-free point).
* Objective, per class ``c``: the **logit margin** ``f_c(x) − mean_{k≠c} f_k(x)`` (``objective=
  "margin"``, default) or the log-softmax ``log p_c(x)`` (``objective="log_softmax"``), minus a
  Gaussian prior ``λ‖z‖²`` and, for image data, a smoothness (total-variation) prior ``μ·TV(z)``,
  where ``z = (x − mean) / unit`` is the input in units of the data's spread (the global standard
  deviation for pixel-like data, each feature's standard deviation for tabular data with mixed
  scales; see :func:`~mlsec_jupyter.checks.robustness._common.data_scale`). The margin does not
  saturate once the model is sure, so it keeps pushing towards what the class looks like; on digits
  with a 64-128-10 MLP it gave a mean similarity of 0.70 against 0.61 for the log-softmax
  (:data:`PRIOR_L2` = 1, 100–300 steps, measured while writing this check).
* Steps: projected Adam (:data:`LEARNING_RATE` in ``z`` units) for ``steps`` iterations, all classes
  in one batch, each step clipped to the range the data spans (``Scale.lower``/``upper``). The
  budget is checked between steps; once the steps have used :data:`STEP_SHARE` of the time that was
  left, the attack stops early and the finding says after how many steps.
* torch ``nn.Module`` classifiers: the gradient comes from autograd on the probe's private eval-mode
  CPU copy (``ModelProbe._model``: parameters detached with ``requires_grad`` off, the user's hooks
  removed), under ``torch.enable_grad()`` with only the input tensor requiring a gradient; the user's
  module, its mode and torch's global RNG and settings are never touched (no randomness is used).
  The steps run on one OpenMP thread of the calling thread (:func:`one_openmp_thread`): the batches
  are tiny, and extra threads only wait on a busy machine.
  A single output is read as a binary logit (``[0, f(x)]``).
* scikit-learn linear classifiers (``coef_``/``intercept_`` with ``decision_function``; also behind
  affine scalers in a Pipeline; :func:`~mlsec_jupyter.checks.robustness._common.linear_form`): the
  same projected ascent in numpy with the **analytic gradient** of the objective on the decision
  values (margin: ``W_c − mean_{k≠c} W_k``, constant; log-softmax of the decision values:
  ``W_c − Σ_k p_k W_k``). A binary model's single decision ``w·x + b`` is read as the two logits
  ``∓(w·x + b)/2``, so the log-softmax is its sigmoid. No closed form is used, because the clipping
  to the data's range matters.
* Anything else (trees, k-NN, kernels...) is not inverted: the finding says a differentiable (torch)
  or linear model is needed.

Measures
--------
All on centred vectors in units of the data's spread: ``similarity[c] = cos(x̂_c − ḡ, m_c − ḡ)``
with ``x̂_c`` the reconstruction, ``m_c`` the class mean of the training rows and ``ḡ`` their overall
mean, so the blank starting point scores 0, not 1. ``identified`` is the share of classes whose
reconstruction is more similar to its own class mean than to any other class mean (chance:
``1 / n_classes``). Baselines: ``member_similarity`` (median similarity of a real training row to
its own class mean: what a typical member reaches), ``other_class_similarity`` (mean similarity of a
reconstruction to the *other* classes' means) and ``class_signal`` (median over classes of
``‖m_c − ḡ‖² / E‖noise‖²``, the squared distance of a class mean from the overall mean relative to
what random labels would give; about 1 when the labels carry nothing). A model trained on random
labels can still point at its noisy class means (a linear model on digits with permuted labels:
similarity 0.58), but those means are the overall mean plus noise and reveal nothing about a class,
so below :data:`MIN_CLASS_SIGNAL` the finding stays informational.

For image data (``(N, H, W)``, ``(N, C, H, W)``, ``(N, H, W, C)`` or flat rows of a square length on
one common scale, as :func:`~mlsec_jupyter.checks.data.backdoor.infer_layout` reads them) the
reconstructions go into ``metrics["images"]`` (greyscale, at most :data:`MAX_IMAGE_SIDE` pixels a
side, at most :data:`MAX_IMAGES` pictures, values 0–1 in the data's range), which the HTML card draws.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...findings import Finding, Severity
from .._models import one_openmp_thread
from ..budget import Budget
from ..registry import register_check
from ._common import (
    NotProbed,
    Scale,
    Target,
    data_scale,
    linear_form,
    prepare_target,
    skipped,
)

CHECK = "model.inversion"
TITLE = "Model inversion"
SKIPPED_TITLE = "Model inversion not checked"

#: Gradient-ascent steps (``steps`` overrides it).
STEPS = 200
#: Adam step size, in units of the data's spread (``z`` units).
LEARNING_RATE = 0.1
#: Weight of the Gaussian prior ``λ‖z‖²`` (keeps the reconstruction near the data).
PRIOR_L2 = 1.0
#: Weight of the total-variation prior (squared neighbour differences of ``z``), image data only.
PRIOR_TV = 0.05
#: Adam's moment decay rates.
ADAM_BETAS = (0.9, 0.999)
#: The ascent stops early once it has used this share of the time budget that was left when it began.
STEP_SHARE = 0.5
#: How many progress reports the ascent makes (``Budget.progress``), at most.
PROGRESS_REPORTS = 10
#: Rows read to compute class means (drawn with the budget's RNG when there are more).
MAX_ROWS = 20_000
#: Rows used for the ``member_similarity`` baseline, at most.
MEMBER_ROWS = 5_000
#: Classes inverted, at most (the most frequent ones when there are more).
MAX_CLASSES = 100
#: A class needs at least this many rows for a class mean worth comparing with.
MIN_CLASS_ROWS = 2
#: Pictures in ``metrics["images"]`` and their largest side (pixels, after downsampling).
MAX_IMAGES = 10
MAX_IMAGE_SIDE = 16

# Severity (the similarity and identification thresholds apply only when the classes differ at all).
#: medium: mean similarity at least this ...
SIMILARITY_MEDIUM = 0.5
#: ... and at least this share of classes identified.
IDENTIFIED_MEDIUM = 0.8
#: low: mean similarity at least this and more classes identified than chance.
SIMILARITY_LOW = 0.3
#: Below this ``class_signal`` the class means are noise around the overall mean: informational only.
MIN_CLASS_SIGNAL = 4.0

OBJECTIVES = ("margin", "log_softmax")
_ADVICE = ("Expose as little as possible to whoever queries the model: return only the label (or coarse, "
           "rounded top-k confidences), never logits, probabilities at full precision or gradients; limit "
           "and monitor API access (rate limits, authentication, query auditing). If a class stands for a "
           "person or another sensitive group, train with differential privacy (DP-SGD, e.g. Opacus) and "
           "track ε with mlsec's privacy accounting, and consider whether such a class should be in a model "
           "others can query at all.")
_NOT_SUPPORTED = ("Model inversion by gradients needs a differentiable model (a torch nn.Module) or a linear "
                  "one (scikit-learn coef_/intercept_ with decision_function, optionally behind affine "
                  "scalers in a Pipeline); {name} is neither, so it was not inverted.")

GradFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


# ==================================================================================================
# the attack (pure numpy; the model enters only through a gradient function)
# ==================================================================================================
def _tv_grad(z: np.ndarray) -> tuple[float, np.ndarray]:
    """Total variation ``Σ (neighbour differences)²`` over the last two axes, and its gradient."""
    dv = z[..., 1:, :] - z[..., :-1, :]
    dh = z[..., :, 1:] - z[..., :, :-1]
    grad = np.zeros_like(z)
    grad[..., 1:, :] += 2 * dv
    grad[..., :-1, :] -= 2 * dv
    grad[..., :, 1:] += 2 * dh
    grad[..., :, :-1] -= 2 * dh
    return float((dv ** 2).sum() + (dh ** 2).sum()), grad


def invert(grad_fn: GradFn, n_classes: int, centre: np.ndarray, spread: np.ndarray, scale: Scale, *,
           steps: int = STEPS, budget: Budget | None = None, image_shape: tuple[int, ...] | None = None,
           channel_axis: int | None = None, lr: float = LEARNING_RATE, l2: float = PRIOR_L2,
           tv: float = PRIOR_TV) -> tuple[np.ndarray, int, str]:
    """Projected Adam ascent from ``centre`` for ``n_classes`` reconstructions at once.

    ``grad_fn(x)`` returns ``(score, d score / d x)`` for rows ``x`` (one per class, flat); the input is
    moved in ``z = (x − centre) / spread`` units and clipped to ``scale.lower``/``upper``. With
    ``image_shape`` (the per-row shape) and ``tv > 0`` a total-variation prior smooths the image.
    Returns ``(reconstructions, steps done, why it stopped early)`` (``""``: all steps done).
    """
    d = centre.shape[0]
    lo = (scale.lower - centre) / spread
    hi = (scale.upper - centre) / spread
    z = np.zeros((n_classes, d))
    m = np.zeros_like(z)
    v = np.zeros_like(z)
    b1, b2 = ADAM_BETAS
    use_tv = tv > 0 and image_shape is not None
    start = time.monotonic()
    allowed = STEP_SHARE * max(budget.remaining, 0.0) if budget is not None else math.inf
    report = getattr(budget, "progress", None)  # the runner's progress line, where there is one
    every = max(1, int(steps) // PROGRESS_REPORTS)
    done = 0
    for t in range(1, int(steps) + 1):
        if budget is not None:
            budget.checkpoint()
            used = time.monotonic() - start
            if done and used > allowed:
                return centre + z * spread, done, "time budget"
            if report is not None and t % every == 0:
                report(max(t / steps, used / allowed), f"model inversion, gradient step {t:,}")
        _, gx = grad_fn(centre + z * spread)
        g = gx * spread - 2.0 * l2 * z
        if use_tv:
            img = z.reshape((n_classes, *image_shape))
            if channel_axis is not None:  # smooth each channel over its own H×W grid
                img = np.moveaxis(img, channel_axis + 1, 1)
                _, gt = _tv_grad(img)
                gt = np.moveaxis(gt, 1, channel_axis + 1)
            else:
                _, gt = _tv_grad(img)
            g = g - tv * gt.reshape(n_classes, d)
        if not np.all(np.isfinite(g)):
            return centre + z * spread, done, "the model's input gradient was not finite"
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        z = z + lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
        z = np.clip(z, lo, hi)
        done = t
    return centre + z * spread, done, ""


def linear_grad(W: np.ndarray, b: np.ndarray, out_index: np.ndarray, objective: str = "margin") -> GradFn:
    """Analytic ``(score, gradient)`` of the linear decision values ``x @ W.T + b`` (see the module doc)."""
    if W.shape[0] == 1:  # binary: one decision value = the difference of two logits
        W = np.vstack([-W / 2.0, W / 2.0])
        b = np.array([-b[0] / 2.0, b[0] / 2.0])
    k = W.shape[0]
    own = W[out_index]
    margin_grad = own - (W.sum(axis=0) - own) / (k - 1)

    def grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = x @ W.T + b
        rows = np.arange(len(x))
        if objective == "margin":
            score = out[rows, out_index] - (out.sum(axis=1) - out[rows, out_index]) / (k - 1)
            return score, margin_grad
        shifted = out - out.max(axis=1, keepdims=True)
        p = np.exp(shifted)
        p /= p.sum(axis=1, keepdims=True)
        score = shifted[rows, out_index] - np.log(np.exp(shifted).sum(axis=1))
        return score, own - p @ W

    return grad


def torch_grad(net: Any, row_shape: tuple[int, ...], out_index: np.ndarray, objective: str = "margin") -> GradFn:
    """``(score, gradient)`` by autograd on ``net`` (the probe's private copy; only the input needs a grad)."""
    import torch

    dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
    index = torch.as_tensor(np.asarray(out_index, dtype=np.int64))

    def grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.enable_grad():
            t = torch.tensor(x.reshape((-1, *row_shape)), dtype=dtype, requires_grad=True)
            out = net(t).reshape(len(x), -1)
            if out.shape[1] == 1:
                out = torch.cat([torch.zeros_like(out), out], dim=1)
            own = out.gather(1, index[:, None])[:, 0]
            if objective == "margin":
                score = own - (out.sum(dim=1) - own) / (out.shape[1] - 1)
            else:
                score = torch.log_softmax(out, dim=1).gather(1, index[:, None])[:, 0]
            (gx,) = torch.autograd.grad(score.sum(), t)
        return score.detach().double().numpy(), gx.detach().double().reshape(len(x), -1).numpy()

    return grad


# ==================================================================================================
# similarity
# ==================================================================================================
def _unit_rows(a: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


def similarities(recon: np.ndarray, class_means: np.ndarray, centre: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Cosine matrix ``[i, k] = cos(recon_i − centre, mean_k − centre)`` in ``unit`` units (0 for a zero vector)."""
    r = _unit_rows((recon - centre) / unit)
    c = _unit_rows((class_means - centre) / unit)
    return r @ c.T


def class_signal(values: np.ndarray, codes: np.ndarray, kept: np.ndarray, class_means: np.ndarray,
                 centre: np.ndarray, unit: np.ndarray) -> float:
    """Median over the kept classes of ``‖m_c − ḡ‖² / ((1/n_c − 1/n)·Σ var)``: about 1 for random labels."""
    n = len(values)
    total_var = float(((values - centre) / unit).var(axis=0).sum())
    if total_var <= 0:
        return 0.0
    ratios = []
    for mean, code in zip(class_means, kept):
        n_c = int(np.sum(codes == code))
        noise = total_var * (1.0 / n_c - 1.0 / n)
        if noise > 0:
            ratios.append(float(np.sum(((mean - centre) / unit) ** 2)) / noise)
    return float(np.median(ratios)) if ratios else float("inf")


# ==================================================================================================
# images for the card
# ==================================================================================================
def _image_layout(target: Target, scale: Scale) -> Any:
    """The backdoor check's image layout of the rows, or ``None`` for tabular data."""
    from ..data.backdoor import infer_layout

    shape = (target.n_total, *target.probe.row_shape)
    layout = infer_layout(shape, target.n_features)
    if layout.kind != "image" or layout.hw is None:
        return None
    if len(shape) == 2 and (scale.kind != "data" or target.probe.columns is not None):
        return None  # a square number of columns on different scales (or named columns) is a table
    return layout


def _downsample(img: np.ndarray, side: int = MAX_IMAGE_SIDE) -> np.ndarray:
    """Block means so that neither side exceeds ``side`` (edges repeated to fill the last block)."""
    h, w = img.shape
    f = max(1, math.ceil(max(h, w) / side))
    if f == 1:
        return img
    H, Wd = math.ceil(h / f) * f, math.ceil(w / f) * f
    padded = np.pad(img, ((0, H - h), (0, Wd - w)), mode="edge")
    return padded.reshape(H // f, f, Wd // f, f).mean(axis=(1, 3))


def image_spec(recon: np.ndarray, labels: list[str], layout: Any, scale: Scale) -> dict[str, Any] | None:
    """``metrics["images"]``: greyscale pictures of (at most :data:`MAX_IMAGES`) reconstructions."""
    lo, hi = float(np.min(scale.lower)), float(np.max(scale.upper))
    if not hi > lo:
        return None
    pictures, shape = [], None
    for row in recon[:MAX_IMAGES]:
        img = row.reshape(layout.shape)
        if layout.channel_axis is not None:
            img = img.mean(axis=layout.channel_axis)
        img = _downsample(np.clip((img - lo) / (hi - lo), 0.0, 1.0))
        shape = [int(img.shape[0]), int(img.shape[1])]
        pictures.append([round(float(v), 3) for v in img.ravel()])
    if not pictures:
        return None
    return {"kind": "images", "shape": shape, "pixels": pictures, "labels": [str(s) for s in labels[:MAX_IMAGES]],
            "caption": "reconstructed class representatives"}


# ==================================================================================================
# the check
# ==================================================================================================
def _label_text(label: Any) -> str:
    return str(label.item() if isinstance(label, np.generic) else label)


def _linear_outputs(model: Any, classes: list[Any]) -> tuple[np.ndarray, list[int]] | None:
    """Index of each class's decision value (from ``model.classes_``) and the positions in ``classes`` of
    the classes the model knows; ``None`` for a model without ``classes_``."""
    known = getattr(model, "classes_", None)
    if known is None:
        return None
    known = list(np.asarray(known).tolist())
    index, kept = [], []
    for i, c in enumerate(classes):
        if c in known:
            index.append(known.index(c))
            kept.append(i)
        elif str(c) in [str(k) for k in known]:
            index.append([str(k) for k in known].index(str(c)))
            kept.append(i)
    return np.asarray(index, dtype=np.int64), kept


@register_check(CHECK, applies_to="model", title=TITLE, requires=("training_data", "labels"), cost="slow")
def inversion(*, model: Any, X: Any, y: Any = None, framework: str = "other", steps: int = STEPS,
              objective: str = "margin", budget: Budget) -> list[Finding]:
    """Reconstruct a representative of each class by gradient ascent on the input and compare it with the
    real class mean of the training rows (see the module doc). ``objective``: ``"margin"`` (default) or
    ``"log_softmax"``; ``steps``: gradient steps (fewer if the time budget runs short)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
    if isinstance(steps, bool) or int(steps) < 1:
        raise ValueError(f"steps must be a positive number of gradient steps, got {steps!r}.")
    steps = int(steps)
    from .._models import is_torch_module

    torch_model = is_torch_module(model)
    if not torch_model and linear_form(model) is None:
        return [skipped(CHECK, SKIPPED_TITLE, _NOT_SUPPORTED.format(name=type(model).__name__))]
    try:
        target = prepare_target(model, X, y, budget, max_rows=MAX_ROWS)
        return [_run(target, model, torch_model, steps, objective, budget)]
    except NotProbed as exc:
        return [skipped(CHECK, SKIPPED_TITLE, f"{exc.message} Model inversion not checked.", exc.severity)]


def _run(target: Target, model: Any, torch_model: bool, steps: int, objective: str, budget: Budget) -> Finding:
    values, codes = target.values, target.codes
    scale = data_scale(values)
    centre = values.mean(axis=0)
    spread = scale.unit if scale.kind == "std" else np.full(target.n_features, max(float(values.std()), 1e-12))
    notes = list(target.notes)
    for note in target.notes:
        budget.note(note)

    counts = np.bincount(codes, minlength=len(target.classes))
    candidates = [i for i in np.argsort(-counts, kind="stable") if counts[i] >= MIN_CLASS_ROWS]
    if len(candidates) > MAX_CLASSES:
        notes.append(f"inverted the {MAX_CLASSES} most frequent of {len(candidates)} classes")
        candidates = candidates[:MAX_CLASSES]
    candidates = sorted(int(i) for i in candidates)

    if torch_model:
        grad_fn, kept = _torch_setup(target, candidates, centre, objective)
        kind = "torch"
    else:
        grad_fn, kept = _linear_setup(target, model, candidates, objective)
        kind = "linear"
    if len(kept) < 2:
        raise NotProbed("Fewer than two classes with at least two rows each that the model scores; "
                        "inversion needs at least two classes.")

    labels = [_label_text(target.classes[i]) for i in kept]
    layout = _image_layout(target, scale)
    image_shape = tuple(layout.shape) if layout is not None else None
    started = time.monotonic()
    with one_openmp_thread() if torch_model else contextlib.nullcontext():
        recon, done, why = invert(grad_fn, len(kept), centre, spread, scale, steps=steps, budget=budget,
                                  image_shape=image_shape,
                                  channel_axis=None if layout is None else layout.channel_axis)
    seconds = time.monotonic() - started
    if done < steps:
        notes.append(f"stopped after {done} of {steps} gradient steps ({why})")
        metrics_stopped = why
    else:
        metrics_stopped = ""

    class_means = np.stack([values[codes == i].mean(axis=0) for i in kept])
    cos = similarities(recon, class_means, centre, scale.unit)
    own = np.diag(cos)
    identified = cos.argmax(axis=1) == np.arange(len(kept))
    n = len(kept)
    other = float((cos.sum() - own.sum()) / (n * (n - 1)))
    signal = class_signal(values, codes, np.asarray(kept), class_means, centre, scale.unit)
    member = _member_similarity(values, codes, kept, class_means, centre, scale.unit, budget)

    metrics: dict[str, Any] = {
        "similarity": {lab: round(float(s), 4) for lab, s in zip(labels, own)},
        "mean_similarity": round(float(own.mean()), 4),
        "min_similarity": round(float(own.min()), 4),
        "identified": round(float(identified.mean()), 4),
        "chance_identified": round(1.0 / n, 4),
        "member_similarity": round(member, 4),
        "other_class_similarity": round(other, 4),
        "class_signal": round(signal, 2) if np.isfinite(signal) else None,
        "n_classes": n,
        "model_kind": kind,
        "objective": objective,
        "steps": done,
        "steps_requested": steps,
        "n_rows": target.n_rows,
        "seconds": round(seconds, 3),
        "units": scale.words,
    }
    if metrics_stopped:
        metrics["stopped"] = metrics_stopped
    if not identified.all():
        metrics["not_identified"] = [lab for lab, ok in zip(labels, identified) if not ok]
    if layout is not None:
        notes.append(f"layout: {layout.text}")
        spec = image_spec(recon, labels, layout, scale)
        if spec is not None:
            metrics["images"] = spec
    if notes:
        metrics["notes"] = notes
    return _finding(metrics, labels, identified, done)


def _torch_setup(target: Target, candidates: list[int], centre: np.ndarray,
                 objective: str) -> tuple[GradFn, list[int]]:
    probe = target.probe
    try:
        n_out = int(probe.outputs(centre[None, :])[1].shape[1])
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on its own data is reported, not raised
        raise NotProbed(f"The model's forward pass failed on a row of its training data "
                        f"({type(exc).__name__}: {str(exc)[:200]}).", Severity.LOW) from None
    width = max(n_out, 2)
    kept = [i for i in candidates if 0 <= int(target.classes[i]) < width]
    if len(kept) < len(candidates):
        raise NotProbed(f"The labels are not class indices of the model's {n_out} output(s) "
                        f"(labels run from {min(target.classes)} to {max(target.classes)}).", Severity.LOW)
    index = np.asarray([int(target.classes[i]) for i in kept], dtype=np.int64)
    grad_fn = torch_grad(probe._model, probe.row_shape, index, objective)
    try:
        grad_fn(np.repeat(centre[None, :], len(kept), axis=0))
    except Exception as exc:  # noqa: BLE001
        raise NotProbed(f"The model's gradient with respect to its input could not be computed "
                        f"({type(exc).__name__}: {str(exc)[:200]}).", Severity.LOW) from None
    return grad_fn, kept


def _linear_setup(target: Target, model: Any, candidates: list[int],
                  objective: str) -> tuple[GradFn, list[int]]:
    form = linear_form(model, target.values[: min(50, target.n_rows)])
    if form is None:
        raise NotProbed(_NOT_SUPPORTED.format(name=type(model).__name__) + " (its decision_function did not "
                        "match coef_/intercept_ on sample rows)")
    W, b = form
    mapped = _linear_outputs(model, [target.classes[i] for i in candidates])
    if mapped is None:
        raise NotProbed(f"{type(model).__name__} has no classes_ (not a fitted classifier).")
    index, local = mapped
    kept = [candidates[j] for j in local]
    n_rows_needed = 2 if W.shape[0] == 1 else W.shape[0]
    if len(index) and index.max() >= n_rows_needed:
        raise NotProbed(f"{type(model).__name__}'s classes_ do not match its coef_ rows.", Severity.LOW)
    return linear_grad(W, b, index, objective), kept


def _member_similarity(values: np.ndarray, codes: np.ndarray, kept: list[int], class_means: np.ndarray,
                       centre: np.ndarray, unit: np.ndarray, budget: Budget) -> float:
    """Median similarity of a real training row of a kept class to its own class mean (a baseline)."""
    position = {code: j for j, code in enumerate(kept)}
    rows = np.flatnonzero(np.isin(codes, kept))
    if len(rows) > MEMBER_ROWS:
        rows = np.sort(budget.rng().choice(rows, size=MEMBER_ROWS, replace=False))
    own = class_means[[position[int(c)] for c in codes[rows]]]
    r = _unit_rows((values[rows] - centre) / unit)
    m = _unit_rows((own - centre) / unit)
    return float(np.median(np.sum(r * m, axis=1))) if len(rows) else 0.0


def _finding(metrics: dict[str, Any], labels: list[str], identified: np.ndarray, done: int) -> Finding:
    mean, n = metrics["mean_similarity"], metrics["n_classes"]
    share = metrics["identified"]
    signal = metrics["class_signal"]
    noisy = signal is not None and signal < MIN_CLASS_SIGNAL
    how = ("on a private copy of the torch model" if metrics["model_kind"] == "torch"
           else "with the linear model's coefficients")
    what = (f"Gradient ascent on the input ({done} step{'s' if done != 1 else ''} {how}) rebuilt a "
            f"representative of each of {n} classes: mean similarity to "
            f"the real class mean {mean:.2f} (a typical training row: {metrics['member_similarity']:.2f}; "
            f"another class's mean: {metrics['other_class_similarity']:.2f}), {int(identified.sum())} of {n} "
            f"classes identified (chance {metrics['chance_identified']:.0%}).")
    if metrics.get("steps", 0) < metrics.get("steps_requested", 0):
        what += f" Stopped after {done} of {metrics['steps_requested']} steps ({metrics.get('stopped', '')})."
    if noisy:
        return Finding(CHECK, Severity.INFO, "Model inversion: the classes barely differ, nothing class-specific "
                       "to reveal", what + f" But the class means differ from the overall mean no more than random "
                       f"labels would (class signal {signal:.1f} < {MIN_CLASS_SIGNAL:g}), so a reconstruction "
                       f"reveals the overall data, not a class.", metrics)
    if mean >= SIMILARITY_MEDIUM and share >= IDENTIFIED_MEDIUM:
        return Finding(CHECK, Severity.MEDIUM, "Class representatives can be reconstructed from the model",
                       what + " An attacker with query or gradient access can recover what a typical member of "
                       "each class looks like; this is sensitive when a class is a person (faces, voices) or "
                       "a small group.", metrics, recommendation=_ADVICE)
    if mean >= SIMILARITY_LOW and share > metrics["chance_identified"]:
        return Finding(CHECK, Severity.LOW, "Class representatives can be partly reconstructed from the model",
                       what + " The reconstructions carry some of what distinguishes each class.", metrics,
                       recommendation=_ADVICE)
    return Finding(CHECK, Severity.INFO, "Model inversion did not recover class representatives",
                   what + " The reconstructions do not look like their classes.", metrics)
