"""``model.inversion``: class representatives rebuilt by gradient ascent on real models (torch MLP and
linear models on digits, binary logistic regression on breast cancer), controls that must stay quiet,
skips, the budget, the gradients themselves, and the image grid on the HTML card."""

from __future__ import annotations

import json
import re

import html5lib
import numpy as np
import pytest
from guards import rng_unchanged, unchanged
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mlsec_jupyter.standards import references_for
from mlsec_jupyter.checks.budget import Budget, CheckCancelled, CheckTimeout
from mlsec_jupyter.checks.registry import get_check, run_check
from mlsec_jupyter.checks.robustness import inversion as I
from mlsec_jupyter.checks.robustness._common import data_scale
from mlsec_jupyter.findings import Finding, RiskCard, Severity
from mlsec_jupyter.render import card_bundle, plots

torch = pytest.importorskip("torch")

CHECK = "model.inversion"
PAYLOAD = "<img src=x onerror=alert(1)>"


# ------------------------------------------------------------------------------------------------
# fixtures: real data, real models (trained without touching torch's global RNG)
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16.0).astype(np.float32), y


def fit(estimator, X, y):
    """Fit with one BLAS thread: on a shared two-core machine OpenBLAS threads fighting torch's OpenMP
    threads made one LogisticRegression fit 40 times slower (2.9 s against 0.08 s)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return estimator.fit(X, y)


def _mlp(X, y, steps: int, seed: int = 0):
    """A 64-128-10 MLP, full-batch Adam; torch's global RNG is forked, so the test leaves it as it was
    (one OpenMP thread, for the reason given in :func:`fit`)."""
    with torch.random.fork_rng(), threadpool_limits(limits=1, user_api="openmp"):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        Xt, yt = torch.tensor(X), torch.tensor(y)
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(Xt), yt).backward()
            opt.step()
    return net


@pytest.fixture(scope="module")
def mlp(digits):
    return _mlp(*digits, steps=60)  # training accuracy 0.99


@pytest.fixture(scope="module")
def mlp_finding(digits, mlp):
    X, y = digits
    (f,) = run_check(CHECK, model=mlp, X=X, y=y)
    return f


@pytest.fixture(scope="module")
def digits_lr(digits):
    X, y = digits
    return fit(LogisticRegression(max_iter=2000), X, y)


@pytest.fixture(scope="module")
def cancer():
    return load_breast_cancer(return_X_y=True)


def _safe(page: str):
    root = html5lib.parse(page, namespaceHTMLElements=False)
    for el in root.iter():
        assert el.tag not in {"script", "img", "svg", "iframe", "object", "embed", "a", "form"}, el.tag
        for name, value in el.attrib.items():
            assert not name.lower().startswith("on") and name.lower() not in {"src", "href"}, name
            assert "url(" not in value and "data:" not in value and "alert" not in value, value
    return root


def by_class(root, cls: str) -> list:
    return [el for el in root.iter() if cls in (el.get("class") or "").split()]


# ------------------------------------------------------------------------------------------------
# registration and the gradients themselves
# ------------------------------------------------------------------------------------------------
def test_registration():
    spec = get_check(CHECK)
    assert spec.applies_to == "model" and spec.cost == "slow" and spec.title == "Model inversion"
    assert spec.requires == ("training_data", "labels")
    assert {"model", "X", "y", "framework", "steps", "objective"} <= spec.parameters


def test_linear_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(4, 6)), rng.normal(size=4)
    x = rng.normal(size=(4, 6))
    for objective in I.OBJECTIVES:
        grad = I.linear_grad(W, b, np.arange(4), objective)
        score, g = grad(x)
        numeric = np.zeros_like(x)
        for j in range(6):
            step = np.zeros_like(x)
            step[:, j] = 1e-6
            numeric[:, j] = (grad(x + step)[0] - grad(x - step)[0]) / 2e-6
        assert np.allclose(g, numeric, atol=1e-6), objective
    # binary: one decision value w·x + b is read as the logits ∓(w·x + b)/2
    w, b1 = rng.normal(size=(1, 6)), np.array([0.3])
    score, g = I.linear_grad(w, b1, np.array([0, 1]), "margin")(x[:2])
    assert np.allclose(score, [-(x[0] @ w[0] + 0.3), x[1] @ w[0] + 0.3]) and np.allclose(g, [-w[0], w[0]])
    p1 = 1 / (1 + np.exp(-(x[1] @ w[0] + 0.3)))
    assert I.linear_grad(w, b1, np.array([0, 1]), "log_softmax")(x[:2])[0][1] == pytest.approx(np.log(p1))


def test_torch_gradient_equals_the_linear_one_for_a_linear_layer():
    rng = np.random.default_rng(1)
    W, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    layer = torch.nn.Linear(5, 3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(W))
        layer.bias.copy_(torch.tensor(b))
    x = rng.normal(size=(3, 5))
    for objective in I.OBJECTIVES:
        s_t, g_t = I.torch_grad(layer, (5,), np.arange(3), objective)(x)
        s_l, g_l = I.linear_grad(W, b, np.arange(3), objective)(x)
        assert np.allclose(s_t, s_l) and np.allclose(g_t, g_l)
    assert layer.weight.grad is None and torch.is_grad_enabled()


def test_similarity_is_centred_and_scale_free():
    centre = np.array([1.0, 1.0, 1.0])
    means = np.array([[2.0, 1.0, 1.0], [1.0, 3.0, 1.0]])
    recon = np.array([[1.0, 1.0, 1.0], [1.0, 1.5, 1.0]])  # the blank start, and half way to class 1
    cos = I.similarities(recon, means, centre, np.ones(3))
    assert cos[0].tolist() == [0.0, 0.0]  # the starting point is similar to nothing
    assert cos[1].tolist() == pytest.approx([0.0, 1.0])


def test_downsampling_and_image_spec():
    img = np.arange(28 * 28, dtype=float).reshape(28, 28)
    small = I._downsample(img)
    assert small.shape == (14, 14) and small[0, 0] == pytest.approx(img[:2, :2].mean())
    assert I._downsample(np.ones((8, 8))).shape == (8, 8)
    assert I._downsample(np.ones((64, 48))).shape == (16, 12)
    rows = np.random.default_rng(0).random((12, 3 * 28 * 28))  # 12 three-channel 28×28 images, NCHW
    from mlsec_jupyter.checks.data.backdoor import infer_layout

    layout = infer_layout((100, 3, 28, 28), 3 * 28 * 28)
    assert layout.kind == "image" and layout.channel_axis == 0
    spec = I.image_spec(rows, [str(i) for i in range(12)], layout, data_scale(rows))
    assert spec["kind"] == "images" and spec["shape"] == [14, 14]
    assert len(spec["pixels"]) == I.MAX_IMAGES == len(spec["labels"])
    assert all(len(p) == 196 and all(0.0 <= v <= 1.0 for v in p) for p in spec["pixels"])


# ------------------------------------------------------------------------------------------------
# real models
# ------------------------------------------------------------------------------------------------
def test_digits_torch_mlp_class_representatives_are_recovered(digits, mlp):
    X, y = digits
    Xt, yt = torch.tensor(X), torch.tensor(y)
    mlp.train()
    threads = torch.get_num_threads()
    with unchanged(mlp, Xt, yt), rng_unchanged():
        findings = run_check(CHECK, model=mlp, X=Xt, y=yt, framework="torch")
    assert torch.get_num_threads() == threads and torch.is_grad_enabled()
    assert mlp.training and all(m.training for m in mlp.modules())
    assert all(p.requires_grad for p in mlp.parameters())  # grads, versions, hooks: see unchanged()
    (f,) = findings
    m = f.metrics
    assert set(m["similarity"]) == {str(c) for c in range(10)}
    # measured (training seeds 0-2): mean 0.72-0.73, min 0.42-0.45, 10 of 10 identified; a typical
    # training row reaches 0.69 against its own class mean
    assert m["mean_similarity"] >= 0.55 and m["min_similarity"] >= 0.25
    assert m["identified"] >= 0.8 and m["chance_identified"] == 0.1 and m["n_classes"] == 10
    assert m["other_class_similarity"] < 0.1 < m["member_similarity"]
    assert m["class_signal"] > 20 and m["model_kind"] == "torch" and m["steps"] == m["steps_requested"] == I.STEPS
    assert f.severity == Severity.MEDIUM and f.title == "Class representatives can be reconstructed from the model"
    assert "DP-SGD" in f.recommendation and "only the label" in f.recommendation
    assert f.references == references_for("model.inversion")
    images = m["images"]
    assert images["kind"] == "images" and images["shape"] == [8, 8] and images["labels"] == [str(c) for c in range(10)]
    assert all(len(p) == 64 and all(0.0 <= v <= 1.0 for v in p) for p in images["pixels"])
    assert any("8×8" in n for n in m["notes"])
    json.dumps(f.to_dict())  # plain JSON, images included


def test_image_shaped_inputs_give_the_same_result(digits, mlp, mlp_finding):
    X, y = digits
    flat = mlp_finding.metrics
    for shape in ((-1, 1, 8, 8), (-1, 8, 8)):
        net = torch.nn.Sequential(torch.nn.Flatten(), *mlp)  # the same weights behind a Flatten
        Xs = X.reshape(shape)
        with unchanged(net, Xs):
            m = run_check(CHECK, model=net, X=Xs, y=y)[0].metrics
        assert m["similarity"] == pytest.approx(flat["similarity"], abs=1e-3)
        assert m["images"]["shape"] == [8, 8]
        assert np.allclose(m["images"]["pixels"], flat["images"]["pixels"], atol=2e-3)


def test_digits_logistic_regression_multinomial(digits, digits_lr):
    X, y = digits
    with unchanged(digits_lr, X, y), rng_unchanged():
        (f,) = run_check(CHECK, model=digits_lr, X=X, y=y)
    m = f.metrics
    assert len(m["similarity"]) == 10 and m["model_kind"] == "linear"
    # measured: mean 0.86, min 0.79, all identified
    assert m["mean_similarity"] >= 0.7 and min(m["similarity"].values()) >= 0.6 and m["identified"] == 1.0
    assert f.severity == Severity.MEDIUM and m["images"]["shape"] == [8, 8]
    (g,) = run_check(CHECK, model=digits_lr, X=X, y=y, objective="log_softmax")
    assert g.metrics["objective"] == "log_softmax" and g.metrics["identified"] >= 0.8  # measured 1.0, mean 0.84


def test_breast_cancer_binary_logistic_regression(cancer):
    X, y = cancer
    pipe = fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), X, y)
    with unchanged(pipe, X, y), rng_unchanged():
        (f,) = run_check(CHECK, model=pipe, X=X, y=y)
    m = f.metrics
    assert set(m["similarity"]) == {"0", "1"} and m["n_classes"] == 2 and m["chance_identified"] == 0.5
    # measured: 0.75 for both classes; features on different scales are compared in std units
    assert min(m["similarity"].values()) >= 0.6 and m["identified"] == 1.0
    assert m["units"] == "standard deviations of each feature" and "images" not in m
    assert f.severity == Severity.MEDIUM
    # the same kind of model fitted on standardised rows directly (no Pipeline): measured 0.75 too
    Xs = StandardScaler().fit_transform(X)
    plain = fit(LogisticRegression(max_iter=2000), Xs, y)
    (r,) = run_check(CHECK, model=plain, X=Xs, y=y)
    assert set(r.metrics["similarity"]) == {"0", "1"} and min(r.metrics["similarity"].values()) >= 0.6


def test_string_labels_are_mapped_through_classes(cancer):
    X, y = cancer
    names = np.where(y == 1, "benign", "malignant")
    pipe = fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), X, names)
    (f,) = run_check(CHECK, model=pipe, X=X, y=names)
    assert set(f.metrics["similarity"]) == {"benign", "malignant"}
    assert min(f.metrics["similarity"].values()) >= 0.6


def test_a_dataframe_with_64_named_columns_is_a_table_not_an_image(digits):
    import pandas as pd

    X, y = digits
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    model = fit(LogisticRegression(max_iter=2000), frame, y)
    with unchanged(frame, model):
        (f,) = run_check(CHECK, model=model, X=frame, y=pd.Series(y))
    assert len(f.metrics["similarity"]) == 10 and f.metrics["identified"] == 1.0 and "images" not in f.metrics


# ------------------------------------------------------------------------------------------------
# controls: nothing to recover
# ------------------------------------------------------------------------------------------------
def test_an_untrained_network_reveals_nothing(digits):
    X, y = digits
    net = _mlp(X, y, steps=0, seed=3)
    with unchanged(net), rng_unchanged():
        (f,) = run_check(CHECK, model=net, X=X, y=y)
    m = f.metrics
    # measured: mean 0.00, 0 of 10 identified
    assert m["mean_similarity"] < 0.2 and m["identified"] <= 0.3
    assert f.severity == Severity.INFO and "did not recover" in f.title


def test_random_labels_give_no_class_specific_finding(digits):
    X, y = digits
    shuffled = np.random.default_rng(0).permutation(y)
    model = fit(LogisticRegression(max_iter=2000), X, shuffled)
    (f,) = run_check(CHECK, model=model, X=X, y=shuffled)
    m = f.metrics
    # the model does point at its (noise) class means — measured similarity 0.61 — but those are the
    # overall mean plus noise: class signal 0.8 against 83 for the real labels
    assert m["class_signal"] < I.MIN_CLASS_SIGNAL and m["member_similarity"] < 0.2
    assert f.severity == Severity.INFO and "barely differ" in f.title


# ------------------------------------------------------------------------------------------------
# skips and bad inputs
# ------------------------------------------------------------------------------------------------
def test_a_random_forest_is_skipped_with_a_reason(cancer):
    X, y = cancer
    rf = fit(RandomForestClassifier(n_estimators=5, random_state=0), X, y)
    with unchanged(rf, X, y):
        (f,) = run_check(CHECK, model=rf, X=X, y=y)
    assert f.severity == Severity.INFO and f.metrics == {"skipped": True}
    assert "differentiable" in f.summary and "linear" in f.summary and "RandomForestClassifier" in f.summary


def test_missing_labels(digits, digits_lr):
    X, _ = digits
    with pytest.raises(ValueError, match="labels"):
        run_check(CHECK, model=digits_lr, X=X)
    (f,) = I.inversion(model=digits_lr, X=X, y=None, budget=Budget())
    assert f.metrics == {"skipped": True} and "labels" in f.summary


def test_strings_in_X_are_skipped(digits, digits_lr):
    X, y = digits
    bad = X.astype(object)
    bad[3, 5] = "seven"
    (f,) = run_check(CHECK, model=digits_lr, X=bad, y=y)
    assert f.metrics == {"skipped": True} and "not checked" in f.summary


def test_labels_that_are_not_output_indices_are_skipped(digits, mlp):
    X, y = digits
    (f,) = run_check(CHECK, model=mlp, X=X, y=y + 5)
    assert f.metrics == {"skipped": True} and "class indices" in f.summary


def test_bad_parameters_raise(digits, digits_lr):
    X, y = digits
    with pytest.raises(ValueError, match="objective"):
        run_check(CHECK, model=digits_lr, X=X, y=y, objective="hinge")
    with pytest.raises(ValueError, match="steps"):
        run_check(CHECK, model=digits_lr, X=X, y=y, steps=0)


# ------------------------------------------------------------------------------------------------
# budget and cancellation
# ------------------------------------------------------------------------------------------------
def test_cancellation_raises(digits, mlp):
    X, y = digits
    budget = Budget()
    budget.cancel_event.set()
    with unchanged(mlp), pytest.raises(CheckCancelled):
        run_check(CHECK, model=mlp, X=X, y=y, budget=budget)


def test_a_spent_budget_times_out(digits, mlp):
    X, y = digits
    with pytest.raises(CheckTimeout):
        run_check(CHECK, model=mlp, X=X, y=y, budget=Budget(seconds=0.0))


def test_a_short_budget_stops_early_and_says_so(digits, mlp):
    X, y = digits
    (f,) = run_check(CHECK, model=mlp, X=X, y=y, steps=10**7, budget=Budget(seconds=1.5))
    m = f.metrics
    assert 1 <= m["steps"] < m["steps_requested"] == 10**7
    assert any(f"stopped after {m['steps']} of 10000000" in n for n in m["notes"])
    assert f"Stopped after {m['steps']} of 10000000 steps (time budget)" in f.summary and m["seconds"] < 1.5
    assert m["stopped"] == "time budget"


# ------------------------------------------------------------------------------------------------
# the card: an image grid of div blocks
# ------------------------------------------------------------------------------------------------
_SAFE_STYLE = {
    "position": r"relative|absolute", "box-sizing": r"content-box", "overflow": r"hidden",
    "left": r"\d+px", "top": r"\d+px", "width": r"\d+px", "height": r"\d+px",
    "background-color": r"#([0-9a-f]{2})\1\1",  # greys only
    "border": r"1px solid rgba\(\d{1,3},\d{1,3},\d{1,3},0\.\d+\)",
    "display": r"inline-block", "margin-right": r"\d+px",
}


def _card(finding: Finding) -> str:
    card = RiskCard("net, X_train", card_id="inversion")
    card.add([finding])
    return card_bundle(card)["text/html"]


def test_the_card_draws_the_reconstructions(mlp_finding):
    page = _card(mlp_finding)
    root = _safe(page)
    tiles = by_class(root, "mlsec-image")
    assert len(tiles) == 10
    assert ["".join(t.itertext()) for t in by_class(root, "mlsec-image-label")] == [str(c) for c in range(10)]
    for grid in by_class(root, "mlsec-image-grid"):
        assert re.search(r"width:64px;height:64px", grid.get("style"))  # 8×8 cells of 8 px
        for el in [grid, *grid]:
            assert el.tag == "div"
            for decl in filter(None, el.get("style").split(";")):
                prop, value = decl.split(":", 1)
                assert prop in _SAFE_STYLE and re.fullmatch(_SAFE_STYLE[prop], value), decl
    for tile in tiles:
        assert re.fullmatch(r"display:inline-block;margin-right:\d+px", tile.get("style"))
    keys = ["".join(e.itertext()) for e in by_class(root, "mlsec-mkey")]
    assert "images" not in keys and "similarity" in keys and "mean_similarity" in keys
    assert "reconstructed class representatives (8×8" in "".join(by_class(root, "mlsec-images")[0].itertext())


def test_reconstruction_blocks_reproduce_the_quantised_pixels(mlp_finding):
    f = mlp_finding
    root = _safe(_card(f))
    grid = by_class(root, "mlsec-image-grid")[0]
    n_levels = plots.GREY_LEVELS[0]
    painted = np.full((8, 8), int(re.search(r"background-color:#([0-9a-f]{2})", grid.get("style")).group(1), 16))
    for block in grid:
        style = block.get("style")
        left, top, w, h = (int(re.search(rf"{k}:(\d+)px", style).group(1)) // 8
                           for k in ("left", "top", "width", "height"))
        painted[top:top + h, left:left + w] = int(re.search(r"background-color:#([0-9a-f]{2})", style).group(1), 16)
    expected = np.round(np.round(np.array(f.metrics["images"]["pixels"][0]) * (n_levels - 1))
                        * 255 / (n_levels - 1)).reshape(8, 8)
    assert np.array_equal(painted, expected)


def test_a_malicious_class_label_is_escaped(digits):
    X, y = digits
    labels = np.where(y == 0, PAYLOAD, y.astype(str))
    model = fit(LogisticRegression(max_iter=500), X, labels)
    (f,) = run_check(CHECK, model=model, X=X, y=labels)
    assert PAYLOAD in f.metrics["similarity"] and PAYLOAD in f.metrics["images"]["labels"]
    page = _card(f)
    root = _safe(page)
    shown = ["".join(e.itertext()) for e in by_class(root, "mlsec-image-label")]
    assert PAYLOAD[: plots.IMAGE_LABEL_LIMIT - 1] + "…" in shown  # cut to the label limit, as text
    assert "<img" not in page.replace("&lt;img", "")


IMG = {"kind": "images", "shape": [2, 2], "pixels": [[0.0, 0.5, 1.0, 0.25]], "labels": ["a"]}


@pytest.mark.parametrize("spec", [
    None, "images", [1, 2], {**IMG, "kind": "line"}, {**IMG, "shape": [2]}, {**IMG, "shape": [17, 2]},
    {**IMG, "shape": [2.0, 2]}, {**IMG, "shape": [True, 2]}, {**IMG, "pixels": []},
    {**IMG, "pixels": [[0.0, 0.5, 1.0]]}, {**IMG, "pixels": [[0.0, 0.5, 1.0, 1.5]]},
    {**IMG, "pixels": [[0.0, 0.5, 1.0, float("nan")]]}, {**IMG, "pixels": [[0.0, 0.5, True, 0.1]]},
    {**IMG, "pixels": [[0, 0, "1", 0]]}, {**IMG, "pixels": [[0.1] * 4] * 11, "labels": None},
    {**IMG, "labels": ["a", "b"]}, {**IMG, "labels": [{"x": 1}]}, {**IMG, "labels": "a"},
])
def test_malformed_image_specs_draw_nothing(spec):
    f = Finding(CHECK, "low", "t", "s", metrics={"images": spec, "mean_similarity": 0.1})
    root = _safe(_card(f))
    assert not by_class(root, "mlsec-images")
    assert "images" not in ["".join(e.itertext()) for e in by_class(root, "mlsec-mkey")]


def test_a_small_valid_spec_is_drawn_exactly():
    html = plots.image_grid({"images": IMG})
    root = html5lib.parse(html, namespaceHTMLElements=False)
    (grid,) = by_class(root, "mlsec-image-grid")
    assert "width:16px;height:16px" in grid.get("style")  # 2×2 cells of 8 px
    colours = sorted(re.search(r"background-color:(#\w+)", b.get("style")).group(1) for b in grid)
    background = re.search(r"background-color:(#\w+)", grid.get("style")).group(1)
    # 8 levels: 0 -> #000000, 0.5 -> level 4 (#929292), 1 -> #ffffff, 0.25 -> level 2 (#494949)
    assert sorted([background, *colours]) == ["#000000", "#494949", "#929292", "#ffffff"]
    assert plots.image_grid({"images": {**IMG, "labels": None}}).count("mlsec-image-label") == 0


def test_busy_pictures_use_fewer_greys_or_are_not_drawn():
    rng = np.random.default_rng(0)
    noise = {"kind": "images", "shape": [16, 16], "pixels": rng.random((10, 256)).round(3).tolist()}
    assert plots.image_grid({"images": noise}) == ""  # too many blocks even in black and white
    ramp = np.linspace(0, 1, 16)
    smooth = {"kind": "images", "shape": [16, 16],
              "pixels": [np.add.outer(ramp, ramp * k / 10).clip(0, 1).ravel().round(3).tolist() for k in range(10)]}
    html = plots.image_grid({"images": smooth})
    assert html and html.count("background-color") <= plots.MAX_IMAGE_BLOCKS + 10
    assert len(html.encode()) < 60_000


def test_progress_is_reported_while_the_ascent_runs(digits, digits_lr):
    X, y = digits
    seen = []
    budget = Budget()
    budget.on_progress = lambda fraction, text: seen.append((fraction, text))
    run_check(CHECK, model=digits_lr, X=X, y=y, budget=budget)
    assert len(seen) == I.PROGRESS_REPORTS and seen[-1] == (1.0, f"model inversion, gradient step {I.STEPS}")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
