"""Risk-card rendering: the bundle, the text card, the HTML card, and its safety (S1, Q10)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import unicodedata
from typing import Any

import html5lib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsec_jupyter.findings import CARD_MIME, CheckStatus, Finding, RiskCard
from mlsec_jupyter.render import card_bundle
from mlsec_jupyter.render import html as render_html
from mlsec_jupyter.render.html import card_css, card_html, dom_id
from mlsec_jupyter.standards import references_for
from mlsec_jupyter.render.text import (
    KEY_LIMIT,
    LABEL_LIMIT,
    TEXT_LIMIT,
    VALUE_LIMIT,
    card_text,
    clean_text,
    format_number,
    format_rows,
    format_value,
)

ELLIPSIS = "\u2026"

# --------------------------------------------------------------------------------------------
# helpers: an independent oracle for cleaning + truncation, an HTML parser and a safety audit
# --------------------------------------------------------------------------------------------


def expected(text: str, limit: int = TEXT_LIMIT) -> str:
    """What the card must show for ``text``: whitespace controls -> space, other control, format
    (bidi, zero-width) and surrogate characters removed, then cut to ``limit`` with an ellipsis."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp"):
            if ch.isspace():
                out.append(" ")
        elif cat in ("Cf", "Cs"):
            continue
        else:
            out.append(ch)
    s = "".join(out)
    return s if len(s) <= limit else s[: limit - 1] + ELLIPSIS


def parse(page: str):
    return html5lib.parse(page, namespaceHTMLElements=False)


def text_of(el) -> str:
    return "".join(el.itertext())


def by_class(root, cls: str) -> list:
    return [el for el in root.iter() if cls in (el.get("class") or "").split()]


ALLOWED_TAGS = {"html", "head", "body", "div", "span", "bdi", "strong", "code", "details",
                "summary", "table", "tbody", "tr", "td", "style"}
ALLOWED_ATTRS = {"id", "class", "style", "dir", "lang", "colspan"}
URL_RE = re.compile(r"(https?:|javascript:|data:|vbscript:|file:|//)", re.I)


def assert_safe(page: str) -> Any:
    """S1/S3 audit of one card; returns the parsed tree."""
    root = parse(page)
    ids = []
    for el in root.iter():
        tag = el.tag
        assert isinstance(tag, str), f"unexpected node {tag!r}"
        assert tag not in {"script", "form", "iframe", "object", "embed", "img", "svg", "a",
                           "link", "meta", "base", "input", "button", "textarea"}, tag
        assert tag in ALLOWED_TAGS, f"unexpected element <{tag}>"
        for name, value in el.attrib.items():
            lname = name.lower()
            assert not lname.startswith("on"), f"event handler {name}"
            assert not lname.startswith("data-"), f"data attribute {name} (commandlinker)"
            assert lname not in {"href", "src", "action", "formaction", "srcdoc", "xlink:href"}, name
            assert lname in ALLOWED_ATTRS, f"unexpected attribute {name}"
            assert not URL_RE.search(value), f"URL in {name}={value!r}"
            assert "url(" not in value.lower() and "expression(" not in value.lower()
            assert "alert" not in value, f"payload leaked into attribute {name}={value!r}"
        if el.get("id") is not None:
            ids.append(el.get("id"))
    assert len(ids) == 1 and re.fullmatch(r"mlsec-card-[A-Za-z0-9_-]+", ids[0]), ids
    styles = [el for el in root.iter() if el.tag == "style"]
    assert len(styles) == 1
    css = text_of(styles[0])
    assert "@import" not in css and "url(" not in css and not URL_RE.search(css)
    assert f"#{ids[0]}" in css  # scoped to this card
    for ch in page:  # no control / bidi / zero-width characters anywhere in the markup
        cat = unicodedata.category(ch)
        assert cat not in ("Cf", "Cs", "Zl", "Zp") and (cat != "Cc" or ch == "\n"), repr(ch)
    return root


def make_done_card(card_id: str | None = None) -> RiskCard:
    card = RiskCard("X_train", card_id=card_id)
    dup = card.expect("data.duplicates", "X_train")
    out = card.expect("data.outliers", "X_train")
    flips = card.expect("data.label_flips", "X_train")
    mia = card.expect("privacy.membership", "clf")
    ev = card.expect("robustness.evasion", "clf")
    noise = card.expect("robustness.noise", "clf")
    card.add([
        Finding("data.outliers", "low", "0.4% outlying rows", "Isolation forest.",
                metrics={"outlier_rate": 0.004}, indices=[7, 19],
                recommendation="Check the outliers for entry errors."),
        Finding("data.duplicates", "high", "12 test rows also in training data",
                "12 of 2,000 test rows appear in X_train.",
                metrics={"train_test_overlap": 12, "exact_duplicates": 37},
                indices=list(range(3, 3 + 17 * 123, 17)),
                recommendation="Deduplicate before splitting.",
                references=["AML.T0020", "OWASP ML02"]),
    ])
    card.finish_run(dup, CheckStatus.DONE, seconds=0.5)
    card.finish_run(out, CheckStatus.DONE, seconds=2.0, sampled="sampled 200,000 of 10,000,000 rows")
    card.finish_run(flips, CheckStatus.SKIPPED, message="needs labels (y)")
    card.finish_run(mia, CheckStatus.FAILED, message="ValueError: bad shape (3,)")
    card.finish_run(ev, CheckStatus.TIMED_OUT, seconds=30.0)
    card.finish_run(noise, CheckStatus.CANCELLED)
    return card


def make_running_card() -> RiskCard:
    card = RiskCard("model.fit(X, y)")
    runs = [card.expect(c) for c in ("data.duplicates", "data.outliers", "privacy.membership",
                                     "robustness.noise", "model.extraction")]
    card.add([Finding("data.duplicates", "medium", "3 duplicate rows", metrics={"exact_duplicates": 3})])
    card.finish_run(runs[0], CheckStatus.DONE)
    card.finish_run(runs[1], CheckStatus.DONE)
    return card


# --------------------------------------------------------------------------------------------
# the bundle
# --------------------------------------------------------------------------------------------


def test_bundle_has_three_parts_and_json_serialises():
    card = make_done_card()
    bundle = card_bundle(card)
    assert set(bundle) == {CARD_MIME, "text/html", "text/plain"}
    data = json.loads(json.dumps(bundle[CARD_MIME], allow_nan=False))
    assert data["card_id"] == card.card_id and data["status"] == "done"
    assert [f["severity"] for f in data["findings"]] == ["high", "low"]
    assert isinstance(bundle["text/html"], str) and isinstance(bundle["text/plain"], str)
    json.dumps(bundle)  # the whole bundle is display-data ready


def test_repr_hooks_delegate_to_render():
    card = make_done_card()
    assert card._repr_mimebundle_() == card_bundle(card)
    assert repr(card) == card_text(card)


def test_bundle_survives_a_renderer_bug(monkeypatch):
    def boom(card):
        raise RuntimeError("<script>alert(1)</script>")

    monkeypatch.setattr("mlsec_jupyter.render.card_html", boom)
    bundle = card_bundle(make_done_card())
    assert "RuntimeError" in bundle["text/html"] and "<script" not in bundle["text/html"]
    assert bundle["text/plain"].startswith("Risk card: X_train")


def test_import_is_cheap():
    code = ("import sys, mlsec_jupyter.render, mlsec_jupyter.render.html; "
            "bad = [m for m in ('matplotlib', 'ipywidgets', 'IPython', 'torch', 'sklearn') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------------------------
# text/plain
# --------------------------------------------------------------------------------------------


def test_text_card_lines():
    lines = card_text(make_done_card()).splitlines()
    assert lines[0] == ("Risk card: X_train (done, max severity: high) \u2014 2 issues: 1 high, 1 low; "
                        "1 failed, 1 timed out, 1 cancelled, 1 skipped")
    assert lines[1] == "[HIGH] data.duplicates: 12 test rows also in training data \u2014 Deduplicate before splitting."
    assert lines[2] == "[LOW] data.outliers: 0.4% outlying rows \u2014 Check the outliers for entry errors."
    assert lines[3:] == [
        "- data.label_flips (X_train): skipped: needs labels (y)",
        "- privacy.membership (clf): check failed: ValueError: bad shape (3,)",
        "- robustness.evasion (clf): timed out after 30 s",
        "- robustness.noise (clf): cancelled",
        "note: data.outliers (X_train): sampled 200,000 of 10,000,000 rows",
    ]


def test_text_running_and_clean_cards():
    running = card_text(make_running_card()).splitlines()
    assert running[0] == ("Risk card: model.fit(X, y) (running, max severity so far: medium) \u2014 "
                          "2 of 5 checks done; 1 issue so far: 1 medium")
    assert "- model.extraction: waiting" in running

    clean = RiskCard("X")
    runs = [clean.expect("data.integrity"), clean.expect("data.duplicates")]
    clean.add([Finding("data.integrity", "info", "No NaN or inf values")])
    for r in runs:
        clean.finish_run(r, CheckStatus.DONE)
    assert card_text(clean).splitlines() == [
        "Risk card: X (done, max severity: info) \u2014 No issues found by 2 checks",
        "[INFO] data.integrity: No NaN or inf values",
    ]
    assert card_text(RiskCard("empty")).endswith("No checks ran")


def test_text_card_neutralises_terminal_escapes_and_newlines():
    card = RiskCard("\x1b[2J\x1b[31mred\u202e\nsecond line")
    card.add([Finding("data.integrity", "info", "a\rb\x07c", recommendation="x\x1b]0;pwned\x07y")])
    text = card_text(card)
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text and "\u202e" not in text
    assert len(text.splitlines()) == 2
    assert "[2J[31mred second line" in text and "a bc" in text


# --------------------------------------------------------------------------------------------
# text/html: content and states
# --------------------------------------------------------------------------------------------


def test_done_card_html_content():
    card = make_done_card()
    root = assert_safe(card_html(card))
    whole = text_of(root)
    assert text_of(by_class(root, "mlsec-verdict")[0]) == (
        "2 issues: 1 high, 1 low; 1 failed, 1 timed out, 1 cancelled, 1 skipped")
    assert not by_class(root, "mlsec-progress")
    titles = [text_of(e) for e in by_class(root, "mlsec-title")]
    assert titles == ["12 test rows also in training data", "0.4% outlying rows"]
    details = [e for e in root.iter() if e.tag == "details"]
    assert len(details) == 2 and all(d.find("summary") is not None for d in details)
    assert "mlsec-sev-high" in details[0].get("class")
    rows = by_class(details[0], "mlsec-rows")[0]
    assert text_of(rows) == "Rows: 3, 20, 37, 54, 71, 88, 105, 122 \u2026 (+115 more)"
    # the check's standards (mlsec_jupyter.standards) first, then the finding's own references
    assert [text_of(e) for e in by_class(details[0], "mlsec-ref")] == [
        "MITRE ATLAS AML.T0020 Poison Training Data", "OWASP ML02:2023 Data Poisoning Attack",
        "NIST AI RMF MEASURE 2.5", "NIST AI RMF MEASURE 2.7", "AML.T0020", "OWASP ML02"]
    assert text_of(by_class(details[0], "mlsec-rec")[0]) == "Recommendation: Deduplicate before splitting."
    metrics = {text_of(k): text_of(v) for k, v in zip(by_class(details[0], "mlsec-mkey"),
                                                       by_class(details[0], "mlsec-mval"))}
    assert metrics == {"train_test_overlap": "12", "exact_duplicates": "37"}
    runs = [text_of(e) for e in by_class(root, "mlsec-run")]
    assert runs == [
        "SKIPPED data.label_flips (X_train) skipped: needs labels (y)",
        "FAILED privacy.membership (clf) check failed: ValueError: bad shape (3,)",
        "TIMED OUT robustness.evasion (clf) timed out after 30 s",
        "CANCELLED robustness.noise (clf) cancelled",
    ]
    assert text_of(by_class(root, "mlsec-note")[0]) == (
        "Sampling data.outliers (X_train): sampled 200,000 of 10,000,000 rows")
    assert "HIGH" in text_of(by_class(root, "mlsec-head")[0])
    assert "#d9480f" in root.find(".//div[@id]").get("style")  # high: orange-red stripe
    assert "done" in whole


def test_running_card_html_shows_progress():
    card = make_running_card()
    root = assert_safe(card_html(card))
    assert text_of(by_class(root, "mlsec-verdict")[0]) == "2 of 5 checks done; 1 issue so far: 1 medium"
    fill = by_class(root, "mlsec-bar-fill")[0]
    assert "width:40.0%" in fill.get("style")
    waiting = text_of(by_class(root, "mlsec-waiting")[0])
    assert waiting == "Still running: privacy.membership, robustness.noise, model.extraction"
    assert "mlsec-status-running" in root.find(".//div[@id]").get("class")
    assert not by_class(root, "mlsec-run")  # pending checks are not "problems"


def test_clean_and_incomplete_card_verdicts():
    card = RiskCard("X")
    runs = [card.expect("data.integrity"), card.expect("data.duplicates")]
    card.add([Finding("data.integrity", "info", "fine")])
    for r in runs:
        card.finish_run(r, CheckStatus.DONE)
    root = assert_safe(card_html(card))
    assert text_of(by_class(root, "mlsec-verdict")[0]) == "No issues found by 2 checks"
    assert "NO ISSUES" in text_of(by_class(root, "mlsec-head")[0])

    card2 = RiskCard("X")
    r1, r2 = card2.expect("data.integrity"), card2.expect("data.backdoor")
    card2.finish_run(r1, CheckStatus.DONE)
    card2.finish_run(r2, CheckStatus.FAILED, message="MemoryError")
    root2 = assert_safe(card_html(card2))
    assert text_of(by_class(root2, "mlsec-verdict")[0]) == "No issues found by 1 check; 1 check failed"
    assert "INCOMPLETE" in text_of(by_class(root2, "mlsec-head")[0])


@pytest.mark.parametrize("severity, colour", [
    ("info", "#6a737d"), ("low", "#2f6fdf"), ("medium", "#e3a008"), ("high", "#d9480f"),
    ("critical", "#b3261e"),
])
def test_severity_pills_and_colours(severity, colour):
    card = RiskCard("X")
    card.add([Finding("data.integrity", severity, "t")])
    root = assert_safe(card_html(card))
    pill = by_class(by_class(root, "mlsec-finding")[0], "mlsec-pill")[0]
    assert text_of(pill) == severity.upper() and colour in pill.get("style")


def test_essential_styles_are_inline_with_plain_fallbacks():
    page = card_html(make_done_card())
    root = parse(page)
    card_div = root.find(".//div[@id]")
    style = card_div.get("style")
    assert "border-left:5px solid" in style and "font-size:13px" in style
    # every var() comes after a plain declaration of the same property (survives sanitizers)
    for el in root.iter():
        decls = [d.split(":", 1) for d in (el.get("style") or "").split(";") if ":" in d]
        seen = set()
        for prop, value in decls:
            if "var(" in value:
                assert prop in seen, f"{prop} uses var() without a plain fallback before it"
                assert re.search(r"var\(--jp-[a-z0-9-]+,", value), value
            seen.add(prop)
        assert "display:flex" not in (el.get("style") or "")


def test_card_css_is_cached_and_local():
    assert card_css() is card_css()
    css = card_css()
    assert "#CARD" in css and "url(" not in css and "@import" not in css and "http" not in css


def test_card_ids_are_sanitised_and_unique():
    nasty = ['x" onmouseover="alert(1)', "a b", "<script>", "a/b", "ab", "", "\u202eevil"]
    ids = [dom_id(n) for n in nasty]
    assert all(re.fullmatch(r"mlsec-card-[A-Za-z0-9_-]+", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert dom_id("mlsec-abc-1") == "mlsec-card-mlsec-abc-1"
    assert "alert" not in dom_id('x" onmouseover="alert(1)') and dom_id("a" * 65) != dom_id("a" * 64)
    for n in nasty:
        assert_safe(card_html(make_done_card(card_id=n or None)))
    a, b = card_html(make_done_card()), card_html(make_done_card())
    assert re.search(r'id="([^"]+)"', a).group(1) != re.search(r'id="([^"]+)"', b).group(1)


# --------------------------------------------------------------------------------------------
# formatting helpers
# --------------------------------------------------------------------------------------------


def test_format_value_is_compact():
    assert format_value(list(range(100))) == f"[0, 1, 2, 3, 4, 5, {ELLIPSIS} +94 more]"
    assert format_value({"cat": 1021, "dog": 979}) == "{cat: 1,021, dog: 979}"
    assert format_value([0.05, 0.1]) == "[0.05, 0.1]"
    assert format_value(np.arange(1_000_000)) == f"[0, 1, 2, 3, 4, 5, {ELLIPSIS} +999,994 more]"
    assert format_value(np.float32(0.25)) == "0.25" and format_value(np.int64(7)) == "7"
    assert format_value(True) == "true" and format_value(None) == "\u2014"
    assert format_value([[1, [2, [3]]]]) == f"[[1, {ELLIPSIS}]]"  # two levels deep, then …
    assert format_value("x" * 500) == "x" * (VALUE_LIMIT - 1) + ELLIPSIS
    assert len(format_value({str(i) * 50: list(range(50)) for i in range(50)})) <= VALUE_LIMIT
    assert format_number(float("nan")) == "NaN" and format_number(float("inf")) == "\u221e"
    assert format_number(12345.6) == "12,346" and format_number(1.5e-7) == "1.5e-07"

    class Evil:
        def __str__(self):
            raise RuntimeError("no")

    assert format_value(Evil()) == "<Evil>"


def test_format_rows():
    assert format_rows([3, 17, 52]) == "3, 17, 52"
    assert format_rows(list(range(123)), shown=3) == f"0, 1, 2 {ELLIPSIS} (+120 more)"


def test_clean_text_removes_every_control_format_and_separator_character():
    everything = "".join(chr(c) for c in range(0x110000))
    cleaned = clean_text(everything, limit=len(everything))
    bad = {unicodedata.category(ch) for ch in cleaned} & {"Cc", "Cf", "Cs", "Zl", "Zp"}
    assert not bad
    assert cleaned == expected(everything, len(everything))


def test_clean_text_on_huge_strings_stops_early():
    huge = "\u200b" * 50_000 + "a" * 100_000
    assert clean_text(huge) == "a" * (TEXT_LIMIT - 1) + ELLIPSIS
    assert clean_text("\ud800x\udfff") == "x"  # lone surrogates cannot reach the UTF-8 encoder


# --------------------------------------------------------------------------------------------
# S1: injection payloads in every user-controlled field
# --------------------------------------------------------------------------------------------

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "</td></tr></table><script>x</script>",
    "</bdi></summary></details></div><script>alert(1)</script>",
    "javascript:alert(1)",
    '<a data-commandlinker-command="notebook:run-all">x</a>',
    '<form action="http://evil"><button formaction="https://evil">go</button></form>',
    '" onmouseover="alert(1)" x="',
    "' style='background:url(https://evil/x.png)'",
    "<style>*{display:none}</style>",
    "<!-- x --><![CDATA[ y ]]>&amp;&lt;&#60;",
    "abc\u202eevil\u202c.txt \u2066iso\u2069 \u202aemb\u202b",
    "zero\u200bwidth\u200c\u200d\u2060\ufeffjoin",
    "nul\x00bell\x07esc\x1b[31mdel\x7fc1\x85\x9b",
    "line\nbreak\r\ntab\tff\x0csep\u2028para\u2029",
    "\U000e0041\U000e0042 tag characters",
    "x" * 100_000,
    "<" * 100_000,
]


#: what every data.integrity finding lists first (mlsec_jupyter.standards)
STANDARD_REFS = list(references_for("data.integrity"))


def payload_card(p: str) -> RiskCard:
    card = RiskCard(p, card_id=p[:200] or None)
    failed = card.expect("data.backdoor", p)
    skipped = card.expect("data.label_flips", "y")
    card.add([Finding(
        "data.integrity", "high", p, p,
        metrics={p: p, "value": p, "list": [p, p], "dict": {p: p}},
        indices=list(range(100)),
        recommendation=p,
        references=[p, "AML.T0020"],
    )])
    card.finish_run(failed, CheckStatus.FAILED, message=p, sampled=p)
    card.finish_run(skipped, CheckStatus.SKIPPED, message=p)
    return card


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: repr(p[:30]))
def test_payloads_are_escaped_text_only(payload):
    card = payload_card(payload)
    bundle = card_bundle(card)
    page = bundle["text/html"]
    root = assert_safe(page)
    assert "<script" not in page.lower() and "<img" not in page.lower() and "<svg" not in page.lower()
    assert "<form" not in page.lower() and "<a " not in page.lower()

    def texts(cls):
        return [text_of(e) for e in by_class(root, cls)]

    full = expected(payload)
    assert texts("mlsec-subject") == [full]
    assert texts("mlsec-title") == [full]
    assert texts("mlsec-summary") == [full]
    assert texts("mlsec-rec-text") == [full]
    assert texts("mlsec-note-text") == [full]
    assert texts("mlsec-run-msg") == ([full, full] if full else [])
    assert texts("mlsec-ref") == [*STANDARD_REFS, expected(payload, LABEL_LIMIT), "AML.T0020"]
    keys = texts("mlsec-mkey")
    assert keys == [expected(payload, KEY_LIMIT), "value", "list", "dict"]
    values = texts("mlsec-mval")
    assert values[0] == values[1] == expected(payload, VALUE_LIMIT)
    assert len(values[2]) <= VALUE_LIMIT and len(values[3]) <= VALUE_LIMIT
    run_checks = texts("mlsec-run-check")
    assert run_checks[0] == f"data.backdoor ({expected(payload, LABEL_LIMIT)})" or len(run_checks[0]) <= 2 * LABEL_LIMIT + 3
    # the text card is one line per item and free of control characters
    text = bundle["text/plain"]
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs") or c == "\n" for c in text)
    assert len(text.splitlines()) == 5  # header, finding, failed run, skipped run, sampling note
    assert len(text) < 5_000


def test_payload_json_is_still_the_raw_card():
    payload = "<script>alert(1)</script>\u202e"
    data = card_bundle(payload_card(payload))[CARD_MIME]
    assert data["subject"] == payload  # the JSON carries data; the Lab renderer uses textContent
    json.dumps(data)


def test_html_size_is_bounded():
    big = "\u00e9<&>\"" * 20_000  # 100 KB, every character escapes to several bytes
    card = RiskCard(big)
    metrics = {f"{i}{big}": [big] * 1000 for i in range(200)}
    card.add([
        Finding("data.duplicates", "critical", big, big, metrics=metrics,
                indices=np.arange(100_000) if i == 0 else [1, 2], recommendation=big,
                references=[big] * 1000)
        for i in range(30)
    ])
    runs = [card.expect(f"check{i}", big) for i in range(500)]
    for r in runs:
        card.finish_run(r, CheckStatus.FAILED, message=big, sampled=f"{r.check} {big}")
    page = card_html(card)
    assert len(page.encode("utf-8")) < 200_000
    root = assert_safe(page)
    assert by_class(root, "mlsec-more")  # the card says findings were left out
    text = card_text(card)
    assert len(text.encode("utf-8")) < 100_000
    assert f"{ELLIPSIS} +450 more checks" in text.splitlines()


def test_many_findings_are_capped_with_a_note(monkeypatch):
    card = RiskCard("X")
    card.add([Finding("data.outliers", "low", f"finding {i}") for i in range(render_html.MAX_FINDINGS + 5)])
    root = assert_safe(card_html(card))
    assert len(by_class(root, "mlsec-finding")) == render_html.MAX_FINDINGS
    assert text_of(by_class(root, "mlsec-more")[0]).startswith(f"{ELLIPSIS} +5 more findings")


# --------------------------------------------------------------------------------------------
# Q10: for arbitrary text, the shown text equals the cleaned, truncated input; no tags from it
# --------------------------------------------------------------------------------------------

TRICKY = st.sampled_from(list("<>&\"'`=/\\;:") + ["</", "<!--", "-->", "&#", "&lt;", "<script>",
                         "\u202e", "\u2066", "\u2069", "\u200b", "\u200d", "\ufeff", "\u00ad",
                         "\x00", "\x1b", "\r", "\n", "\t", "\x0c", "\x85", "\u2028", "\x9b",
                         "\u05d0", "\u0627", "\u0301", "\U0001f600", "\ufffe", "\U000e0020"])
ARBITRARY = st.lists(st.one_of(st.characters(), TRICKY), min_size=1, max_size=200).map("".join)


def _structure(root) -> list:
    return [(el.tag, sorted(k for k in el.attrib)) for el in root.iter()]


_BASELINE = None


def _baseline_structure() -> list:
    global _BASELINE
    if _BASELINE is None:
        card = RiskCard("X", card_id="q10")
        card.add([Finding("data.integrity", "high", "x", "s", recommendation="r")])
        _BASELINE = _structure(parse(card_html(card)))
    return _BASELINE


@settings(max_examples=300, deadline=None)
@given(title=ARBITRARY)
def test_q10_title_text_equals_truncated_input(title):
    card = RiskCard("X", card_id="q10")
    card.add([Finding("data.integrity", "high", title, "s", recommendation="r")])
    root = parse(card_html(card))
    assert [text_of(e) for e in by_class(root, "mlsec-title")] == [expected(title)]
    assert _structure(root) == _baseline_structure()  # no element or attribute came from the text
    line = card_text(card).splitlines()[1]
    assert line == f"[HIGH] data.integrity: {expected(title)} \u2014 r"


@settings(max_examples=150, deadline=None)
@given(text=ARBITRARY, key=ARBITRARY)
def test_q10_every_field(text, key):
    card = RiskCard(text, card_id="q10")
    run = card.expect("data.backdoor")
    card.add([Finding("data.integrity", "medium", text, text, metrics={key: text},
                      recommendation=text, references=[text])])
    card.finish_run(run, CheckStatus.FAILED, message=text, sampled=text)
    root = assert_safe(card_html(card))
    full = expected(text)
    for cls in ("mlsec-subject", "mlsec-title", "mlsec-summary", "mlsec-rec-text", "mlsec-note-text"):
        assert [text_of(e) for e in by_class(root, cls)] == [full], cls
    assert [text_of(e) for e in by_class(root, "mlsec-run-msg")] == ([full] if full else [])
    assert [text_of(e) for e in by_class(root, "mlsec-ref")] == [*STANDARD_REFS, expected(text, LABEL_LIMIT)]
    assert [text_of(e) for e in by_class(root, "mlsec-mkey")] == [expected(key, KEY_LIMIT)]
    assert [text_of(e) for e in by_class(root, "mlsec-mval")] == [expected(text, VALUE_LIMIT)]


def test_min_severity_hides_lower_findings_and_says_so():
    from mlsec_jupyter.findings import Finding, RiskCard, Severity
    from mlsec_jupyter.render import card_bundle

    card = RiskCard("X, y")
    card.add([Finding("data.integrity", "info", "All fine"), Finding("data.duplicates", "high", "Leak")])
    card.min_severity = Severity.LOW
    bundle = card_bundle(card)
    assert "Leak" in bundle["text/plain"] and "All fine" not in bundle["text/plain"]
    assert "1 finding below low hidden" in bundle["text/plain"]
    assert "All fine" not in bundle["text/html"] and "1 finding below low hidden" in bundle["text/html"]
    assert len(bundle["application/vnd.mlsec.riskcard+json"]["findings"]) == 2  # the JSON keeps all


def test_findings_name_their_target_when_a_card_covers_several():
    from mlsec_jupyter.findings import Finding, RiskCard
    from mlsec_jupyter.render import card_bundle

    card = RiskCard("train · test")
    card.add([Finding("data.integrity", "low", "NaN", target="X_train, y_train (train)"),
              Finding("data.integrity", "low", "NaN", target="X_test, y_test (test)")])
    bundle = card_bundle(card)
    assert "(on X_test, y_test (test))" in bundle["text/plain"]
    assert "X_train, y_train (train)" in bundle["text/html"]
    single = RiskCard("one")
    single.add([Finding("data.integrity", "low", "NaN", target="X")])
    assert "(on X)" not in card_bundle(single)["text/plain"]


def test_card_json_cuts_huge_strings_and_lists():
    import json

    from mlsec_jupyter.findings import Finding, RiskCard

    card = RiskCard("s" * 100_000)
    card.add([Finding("c", "low", "t" * 100_000, metrics={"k" * 5000: ["v" * 5000] * 5000})])
    data = card.to_dict()
    assert len(json.dumps(data)) < 2_000_000
    assert len(data["subject"]) == 1000 and data["subject"].endswith("…")


# --------------------------------------------------------------------------------------------
# the suspected-trigger picture (data.backdoor's ``trigger_mask`` metric)
# --------------------------------------------------------------------------------------------

_PX_RE = re.compile(r"left:(\d+)px;top:(\d+)px;width:(\d+)px;height:(\d+)px;background-color:(#[0-9a-f]{6})")


def digits_mask() -> list[list[int]]:
    """8×8, a 2×2 patch in the bottom-right corner (the BadNets digits trigger)."""
    mask = [[0] * 8 for _ in range(8)]
    for r in (6, 7):
        for c in (6, 7):
            mask[r][c] = 1
    return mask


def trigger_card(mask: Any, target: Any = 0, value: Any = 16.0, severity: str = "high") -> RiskCard:
    card = RiskCard("X_digits", card_id="trig")
    card.add([Finding("data.backdoor", severity, "Possible backdoor trigger", "s",
                      metrics={"n_suspects": 90, "target_class": target, "trigger_value": value,
                               "trigger_box": [6, 6, 2, 2], "trigger_mask": mask})])
    return card


def drawn_grid(root) -> tuple[list[list[int]], int, set]:
    """Rebuild the 0/1 grid from the picture's blocks; returns (grid, rect count, colours)."""
    frame = by_class(root, "mlsec-trigger-grid")[0]
    style = frame.get("style")
    w_px = int(re.search(r"(?:^|;)width:(\d+)px", style).group(1))
    h_px = int(re.search(r"(?:^|;)height:(\d+)px", style).group(1))
    blocks = by_class(frame, "mlsec-px")
    coords = [_PX_RE.search(b.get("style")) for b in blocks]
    assert all(coords), [b.get("style") for b in blocks]
    # the cell size follows from the frame and the image size in the caption
    caption = text_of(by_class(root, "mlsec-trigger-caption")[0])
    h, w = map(int, re.search(r"(\d+)\u00d7(\d+) image", caption).groups())
    assert w_px % w == 0 and h_px % h == 0 and w_px // w == h_px // h
    cell = w_px // w
    grid = [[0] * w for _ in range(h)]
    for m in coords:
        x, y, bw, bh = (int(m.group(i)) for i in range(1, 5))
        assert x % cell == y % cell == bw % cell == bh % cell == 0
        for r in range(y // cell, (y + bh) // cell):
            for c in range(x // cell, (x + bw) // cell):
                assert grid[r][c] == 0, "blocks overlap"
                grid[r][c] = 1
    return grid, len(blocks), {m.group(5) for m in coords}


def test_trigger_picture_for_the_digits_patch():
    root = assert_safe(card_html(trigger_card(digits_mask())))
    pictures = by_class(root, "mlsec-trigger")
    assert len(pictures) == 1
    assert by_class(root, "mlsec-evidence")[0] in [p for p in root.iter() if pictures[0] in list(p)]
    assert text_of(by_class(root, "mlsec-trigger-caption")[0]) == "Suspected trigger (8\u00d78 image, target class '0')"
    grid, n_blocks, colours = drawn_grid(root)
    assert grid == digits_mask() and n_blocks == 1  # the 2×2 patch is one block
    assert colours == {"#d9480f"}  # the finding's severity colour
    assert text_of(by_class(root, "mlsec-trigger-legend")[0]) == "4 trigger pixels, value 16"
    keys = [text_of(e) for e in by_class(root, "mlsec-mkey")]
    assert keys == ["n_suspects", "target_class", "trigger_value", "trigger_box"]  # mask not as text
    frame = by_class(root, "mlsec-trigger-grid")[0].get("style")
    assert "width:112px" in frame and "height:112px" in frame  # 8 cells of 14 px


def test_trigger_picture_from_the_backdoor_checks_own_mask():
    from mlsec_jupyter.checks.data.backdoor import infer_layout, trigger_mask

    layout = infer_layout((100, 8, 8), 64)
    mask = trigger_mask(layout, np.array([54, 55, 62, 63]))
    assert mask == digits_mask()
    root = assert_safe(card_html(trigger_card(mask)))
    assert drawn_grid(root)[0] == mask


def _checker(h: int, w: int) -> list[list[int]]:
    return [[(r + c) % 2 for c in range(w)] for r in range(h)]


DRAWABLE = {
    "single": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "full": [[1] * 5 for _ in range(4)],
    "one-by-one": [[1]],
    "bools": [[True, False], [False, True]],
    "L": [[1, 0, 0], [1, 0, 0], [1, 1, 1]],
    "ring": [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]],
    "checker-10": _checker(10, 10),
    "row-64": [[1 if c % 3 == 0 else 0 for c in range(64)]],
    "column-64": [[1] for _ in range(64)],
    "28x28-corner": [[1 if r >= 24 and c >= 24 else 0 for c in range(28)] for r in range(28)],
    "64x64-sparse": [[1 if (r * 7 + c * 3) % 97 == 0 else 0 for c in range(64)] for r in range(64)],
    "9x12": [[1 if (r + c) % 5 == 0 and r > 6 else 0 for c in range(12)] for r in range(9)],
}


@pytest.mark.parametrize("name", list(DRAWABLE))
def test_trigger_picture_draws_exactly_the_mask(name):
    mask = DRAWABLE[name]
    root = assert_safe(card_html(trigger_card(mask, severity="medium")))
    grid, n_blocks, colours = drawn_grid(root)
    assert grid == [[int(v) for v in row] for row in mask]
    assert n_blocks <= render_html.MAX_TRIGGER_RECTS and colours == {"#e3a008"}
    n_set = sum(map(sum, grid))
    legend = text_of(by_class(root, "mlsec-trigger-legend")[0])
    assert legend == f"{n_set} trigger pixel{'s' if n_set != 1 else ''}, value 16"
    frame = by_class(root, "mlsec-trigger-grid")[0].get("style")
    side = max(int(v) for v in re.findall(r"(?:^|;)(?:width|height):(\d+)px", frame))
    assert 14 <= side <= 3 * 64  # small: 3–14 px a cell


@given(st.integers(1, 20).flatmap(lambda h: st.integers(1, 20).flatmap(
    lambda w: st.lists(st.lists(st.integers(0, 1), min_size=w, max_size=w), min_size=h, max_size=h))))
@settings(max_examples=150, deadline=None)
def test_trigger_blocks_cover_exactly_the_set_cells(mask):
    rects = render_html._mask_rects([[bool(v) for v in row] for row in mask], limit=10_000)
    grid = [[0] * len(mask[0]) for _ in mask]
    for r, c, h, w in rects:
        for i in range(r, r + h):
            for j in range(c, c + w):
                assert grid[i][j] == 0
                grid[i][j] = 1
    assert grid == mask


class _Int(int):
    pass


MALFORMED = {
    "none": None,
    "string": "[[0, 1], [1, 0]]",
    "empty": [],
    "empty-row": [[]],
    "ragged": [[1, 0], [1]],
    "two": [[0, 2]],
    "minus-one": [[-1, 1]],
    "float": [[1.0, 0.0]],
    "string-cells": [["1", "0"]],
    "none-cell": [[1, None]],
    "tuple-rows": [(1, 0), (0, 1)],
    "tuple-outer": ([1, 0], [0, 1]),
    "nested-deeper": [[[1]]],
    "numpy-array": np.eye(4, dtype=int),
    "numpy-ints": [[np.int64(1), np.int64(0)]],
    "int-subclass": [[_Int(1), 0]],
    "all-zero": [[0] * 8 for _ in range(8)],
    "too-tall": [[1] for _ in range(65)],
    "too-wide": [[1] * 65],
    "huge": [[1] * 1000 for _ in range(1000)],
    "too-busy": _checker(64, 64),
    "dict": {"0": [1]},
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_no_trigger_picture_for_malformed_or_oversized_masks(name):
    page = card_html(trigger_card(MALFORMED[name]))
    root = assert_safe(page)
    assert not by_class(root, "mlsec-trigger") and not by_class(root, "mlsec-px")
    keys = [text_of(e) for e in by_class(root, "mlsec-mkey")]
    assert "trigger_mask" in keys  # still listed, abbreviated, as text
    values = [text_of(e) for e in by_class(root, "mlsec-mval")]
    assert all(len(v) <= VALUE_LIMIT for v in values)
    assert len(page.encode("utf-8")) < 12_000


def test_no_trigger_picture_without_the_metric_or_with_odd_keys():
    class Odd:
        def __hash__(self):
            return hash("trigger_mask")

        def __eq__(self, other):
            raise RuntimeError("no")

    card = RiskCard("X")
    card.add([Finding("data.backdoor", "high", "a", metrics={"trigger_value": 1}),
              Finding("data.backdoor", "high", "b", metrics={Odd(): 1, "target_class": 0})])
    root = assert_safe(card_html(card))
    assert not by_class(root, "mlsec-trigger")


def test_trigger_caption_without_target_and_value():
    root = assert_safe(card_html(trigger_card(digits_mask(), target=None, value=[1.0, 0.5])))
    assert text_of(by_class(root, "mlsec-trigger-caption")[0]) == "Suspected trigger (8\u00d78 image)"
    assert text_of(by_class(root, "mlsec-trigger-legend")[0]) == "4 trigger pixels"
    assert not by_class(root, "mlsec-trigger-class")


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: repr(p[:30]))
def test_trigger_caption_escapes_the_target_class(payload):
    page = card_html(trigger_card(digits_mask(), target=payload, value=payload))
    root = assert_safe(page)
    assert "<script" not in page.lower() and "<img" not in page.lower() and "<svg" not in page.lower()
    assert [text_of(e) for e in by_class(root, "mlsec-trigger-class")] == [expected(payload, LABEL_LIMIT)]
    caption = text_of(by_class(root, "mlsec-trigger-caption")[0])
    assert caption == f"Suspected trigger (8\u00d78 image, target class '{expected(payload, LABEL_LIMIT)}')"
    assert text_of(by_class(root, "mlsec-trigger-legend")[0]) == "4 trigger pixels"  # non-numeric value


# what JupyterLab's sanitizer keeps for untrusted output (apputils sanitizer.ts allowedStyles)
_SANITIZER_SAFE = {
    "position": r"relative|absolute",
    "box-sizing": r"content-box",
    "left": r"\d+px", "top": r"\d+px", "width": r"\d+px", "height": r"\d+px",
    "overflow": r"hidden",
    "background-color": r"#[0-9a-f]{6}|rgba\(\d{1,3},\d{1,3},\d{1,3},0\.\d+\)",
    "border": r"1px solid rgba\(\d{1,3},\d{1,3},\d{1,3},0\.\d+\)",
    "border-top-width": r"0", "border-left-width": r"0",
    "background-image": (r"linear-gradient\(to right,rgba\([\d,.]+\) 1px,transparent 1px\),"
                         r"linear-gradient\(to bottom,rgba\([\d,.]+\) 1px,transparent 1px\)"),
    "background-size": r"\d+px \d+px",
    "display": r"inline-block", "margin-right": r"\d+px", "vertical-align": r"-?\d+px",
}


def test_trigger_picture_uses_only_sanitizer_safe_styles():
    for mask in (digits_mask(), DRAWABLE["64x64-sparse"]):
        root = assert_safe(card_html(trigger_card(mask)))
        picture = by_class(root, "mlsec-trigger")[0]
        legend = by_class(picture, "mlsec-trigger-legend")[0]
        for el in [by_class(picture, "mlsec-trigger-grid")[0], *by_class(picture, "mlsec-px"),
                   legend, *legend]:  # the legend and its colour swatch
            assert el.tag in ("div", "span")
            for decl in filter(None, (el.get("style") or "").split(";")):
                prop, value = decl.split(":", 1)
                if prop in ("font-size", "margin-top", "color"):
                    continue
                assert prop in _SANITIZER_SAFE, decl
                assert re.fullmatch(_SANITIZER_SAFE[prop], value), decl


def test_trigger_pictures_keep_the_card_bounded():
    # the busiest mask that is still drawn: 64 rows of isolated pixels, MAX_TRIGGER_RECTS in all
    n = render_html.MAX_TRIGGER_RECTS
    busy = [[0] * 64 for _ in range(64)]
    for i in range(n):
        busy[(i // 32) * 2 % 64][(i % 32) * 2] = 1
    one = card_html(trigger_card(busy))
    root = assert_safe(one)
    assert drawn_grid(root)[1] == n
    plain = card_html(trigger_card(None))
    assert len(one.encode("utf-8")) - len(plain.encode("utf-8")) < 25_000
    card = RiskCard("X")
    big = "\u00e9<&>\"" * 20_000
    card.add([Finding("data.backdoor", "high", big, big, recommendation=big,
                      metrics={"target_class": big, "trigger_mask": busy, "trigger_value": 1})
              for _ in range(40)])
    page = card_html(card)
    assert len(page.encode("utf-8")) < 200_000
    root = assert_safe(page)
    assert by_class(root, "mlsec-more")
    # one more set cell and it is no longer drawn
    busier = [row[:] for row in busy]
    busier[63][63] = 1
    assert not by_class(parse(card_html(trigger_card(busier))), "mlsec-trigger")


def test_info_findings_fold_into_one_row_below_the_issues():
    import html5lib

    from mlsec_jupyter.findings import Finding, RiskCard
    from mlsec_jupyter.render.html import card_html

    card = RiskCard("X, y")
    card.add([Finding("data.integrity", "info", "No integrity problems found"),
              Finding("data.duplicates", "high", "Train/test overlap"),
              Finding("data.provenance", "info", "Fingerprint 3f2a"),
              Finding("data.outliers", "info", "No outlying rows found")])
    tree = html5lib.parse(card_html(card), namespaceHTMLElements=False)
    groups = [e for e in tree.iter("details") if "mlsec-info-group" in e.get("class", "")]
    assert len(groups) == 1
    inside = "".join(groups[0].itertext())
    assert "No integrity problems found" in inside and "Fingerprint 3f2a" in inside
    assert "Train/test overlap" not in inside
    assert "3 info findings: data.integrity, data.outliers, data.provenance" in inside
    single = RiskCard("one")
    single.add([Finding("data.integrity", "info", "Clean")])
    assert "mlsec-info-group" not in card_html(single)


# --------------------------------------------------------------------------------------------
# plots and gauges asked for through metrics (render/plots.py)
# --------------------------------------------------------------------------------------------
def plot_card(metrics: dict, severity: str = "info") -> RiskCard:
    card = RiskCard("net (DP-SGD)", card_id="plot")
    card.add([Finding("privacy.dp_budget", severity, "DP training", "s", metrics=metrics)])
    return card


CURVE = {"curve_steps": [10, 20, 30, 40], "curve_epsilon": [0.5, 0.8, 1.0, 1.2],
         "plot": {"kind": "line", "x": "curve_steps", "y": "curve_epsilon", "x_label": "steps", "y_label": "ε"}}


def _dots(root) -> list[tuple[int, int]]:
    area = by_class(root, "mlsec-plot-area")[0]
    return [(int(re.search(r"left:(\d+)px", d.get("style")).group(1)),
             int(re.search(r"top:(\d+)px", d.get("style")).group(1))) for d in area]


def test_a_line_plot_draws_one_dot_per_point_in_order():
    root = assert_safe(card_html(plot_card(dict(CURVE))))
    dots = _dots(root)
    assert len(dots) == 4
    assert [x for x, _ in dots] == sorted(x for x, _ in dots) and dots[0][0] == 0
    assert [y for _, y in dots] == sorted((y for _, y in dots), reverse=True)  # rising ε: dots go up
    assert "steps: 10 – 40" in text_of(by_class(root, "mlsec-plot")[0])
    assert "plot" not in [text_of(e) for e in by_class(root, "mlsec-mkey")]  # instructions are not evidence


def test_a_gauge_shows_the_share_used_and_turns_red_past_the_limit():
    for value, colour in [(1.0, "#1a7f37"), (2.7, "#bf8700"), (4.5, "#cf222e")]:
        root = assert_safe(card_html(plot_card({"gauge": {"value": value, "limit": 3.0, "label": "ε spent"}})))
        gauge_el = by_class(root, "mlsec-gauge")[0]
        assert f"{value:.3g} / 3" in text_of(gauge_el)
        fill = list(by_class(root, "mlsec-gauge-bar")[0])[0].get("style")
        assert colour in fill
        width = int(re.search(r"width:(\d+)px", fill).group(1))
        assert width == round(min(value / 3.0, 1.0) * 220)


@pytest.mark.parametrize("metrics", [
    {**CURVE, "curve_epsilon": [0.5, 0.8, 1.0]},  # lengths differ
    {**CURVE, "curve_epsilon": [0.5, float("nan"), 1.0, 1.2]},
    {**CURVE, "curve_epsilon": ["1", "2", "3", "4"]},
    {**CURVE, "plot": {"kind": "pie", "x": "curve_steps", "y": "curve_epsilon"}},
    {**CURVE, "plot": {"kind": "line", "x": "nope", "y": "curve_epsilon"}},
    {**CURVE, "curve_steps": [1] * 4},  # no spread
    {**CURVE, "plot": "line"},
    {"gauge": {"value": "3", "limit": 3}}, {"gauge": {"value": 1, "limit": 0}}, {"gauge": [1, 2]},
])
def test_malformed_plot_requests_are_not_drawn(metrics):
    root = assert_safe(card_html(plot_card(metrics)))
    assert not by_class(root, "mlsec-plot") and not by_class(root, "mlsec-gauge")


def test_plot_labels_are_escaped_and_cut():
    payload = "<script>alert(1)</script>" * 5
    metrics = {**CURVE, "plot": {**CURVE["plot"], "x_label": payload}, "gauge": {"value": 1, "limit": 2,
                                                                                 "label": payload}}
    root = assert_safe(card_html(plot_card(metrics)))
    assert "<script>" in text_of(by_class(root, "mlsec-plot")[0])  # shown as text


def test_plots_use_only_sanitizer_safe_styles():
    safe = {**_SANITIZER_SAFE, "border": r"1px solid rgba\(\d{1,3},\d{1,3},\d{1,3},0\.\d+\)"}
    root = assert_safe(card_html(plot_card({**CURVE, "gauge": {"value": 1, "limit": 2, "label": "ε"}})))
    blocks = [by_class(root, "mlsec-plot-area")[0], *by_class(root, "mlsec-plot-area")[0],
              by_class(root, "mlsec-gauge-bar")[0], *by_class(root, "mlsec-gauge-bar")[0]]
    for el in blocks:
        for decl in filter(None, (el.get("style") or "").split(";")):
            prop, value = decl.split(":", 1)
            assert prop in safe and re.fullmatch(safe[prop], value), decl
