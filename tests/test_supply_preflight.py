"""Model files are scanned *before* the cell that loads them runs (issue 6): the card comes first, and with
``file_policy=block`` a cell that would unpickle an unsafe file does not run. Fixtures are written by the
tests; the malicious pickle would run ``touch pwned`` if it were ever loaded, and every test asserts that
it was not."""

from __future__ import annotations

import pickle

import pytest
from conftest import card_bundles, run

#: ``os.system("touch pwned")`` as a protocol-0 pickle, assembled by hand (GLOBAL, MARK, STRING, TUPLE,
#: REDUCE, STOP).
EVIL = b"cos\nsystem\n(S'touch pwned'\ntR."


@pytest.fixture
def files(in_tmp):
    (in_tmp / "evil.pkl").write_bytes(EVIL)
    with open(in_tmp / "good.pkl", "wb") as fh:
        pickle.dump({"weights": [1.0, 2.0], "name": "ok"}, fh, protocol=4)
    return in_tmp


def _supply(card):
    return [f for f in card["findings"] if f["check"] == "supply.pickle"]


def test_an_unsafe_file_gets_its_card_before_the_cell_runs(ip, files):
    result, outputs, _, _ = run(ip, "import pickle\nran = True\nif not ran:\n"
                                    "    obj = pickle.load(open('evil.pkl', 'rb'))")
    assert result.success and ip.user_ns["ran"] is True
    cards = card_bundles(outputs)
    assert cards and "evil.pkl" in cards[0]["subject"]
    (finding, *_) = _supply(cards[0])
    assert finding["severity"] == "critical" and "os.system" in finding["metrics"]["unsafe_globals"]
    assert len([c for c in cards if _supply(c)]) == 1, "the file is scanned once, before the cell"
    assert not (files / "pwned").exists()


def test_block_policy_stops_the_cell_and_says_how_to_proceed(ip, files):
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, outputs, _, err = run(ip, "import pickle\nobj = pickle.load(open('evil.pkl', 'rb'))")
    assert not result.success and "obj" not in ip.user_ns
    assert type(result.error_in_exec).__name__ == "UsageError"
    assert "blocked this cell" in str(result.error_in_exec) and "file_policy=warn" in str(result.error_in_exec)
    assert not (files / "pwned").exists()
    (card,) = [c for c in card_bundles(outputs) if _supply(c)]
    assert _supply(card)[0]["severity"] == "critical"


def test_a_path_held_in_a_variable_and_a_with_block_are_resolved(ip, files):
    run(ip, "p = 'evil.pkl'")
    _, outputs, _, _ = run(ip, "import pickle\nif False:\n    obj = pickle.load(open(p, 'rb'))")
    assert any(_supply(c) for c in card_bundles(outputs))
    _, outputs, _, _ = run(ip, "if False:\n    with open('evil.pkl', 'rb') as fh:\n        obj = pickle.load(fh)")
    assert any(_supply(c) for c in card_bundles(outputs))
    assert not (files / "pwned").exists()


def test_a_safe_file_loads_with_a_safe_card(ip, files):
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, outputs, _, _ = run(ip, "import pickle\nobj = pickle.load(open('good.pkl', 'rb'))")
    assert result.success and ip.user_ns["obj"]["name"] == "ok"
    (finding,) = [f for c in card_bundles(outputs) for f in _supply(c)]
    assert finding["severity"] == "info" and finding["metrics"]["unsafe_globals"] == []


def test_torch_load_with_weights_only_false_is_flagged(ip, files):
    import torch

    torch.save({"w": torch.ones(2)}, files / "state.pt")
    _, outputs, _, _ = run(ip, "import torch\nif False:\n    sd = torch.load('state.pt', weights_only=False)")
    titles = [f["title"] for c in card_bundles(outputs) for f in _supply(c)]
    assert any("weights_only=False" in t for t in titles), titles


def test_scanfile_magic_and_the_api(ip, files):
    import mlsec_jupyter as mj
    from IPython.core.error import UsageError

    _, outputs, _, _ = run(ip, "%mlsec scanfile evil.pkl")
    (card,) = card_bundles(outputs)
    assert _supply(card)[0]["severity"] == "critical"
    with pytest.raises(UsageError, match="is not a file"):
        ip.run_line_magic("mlsec", "scanfile missing.pkl")
    api_card = mj.scan_file(files / "good.pkl")
    assert api_card.findings[0].check == "supply.pickle" and api_card.findings[0].metrics["unsafe_globals"] == []
    assert not (files / "pwned").exists()


def test_torch_load_counts_as_running_code_unless_the_safe_unpickler_is_certain():
    from mlsec_jupyter.preflight import executes_code
    from mlsec_jupyter.watch.cell import parse_cell

    def runs(code):
        return executes_code(parse_cell(code).file_loads[0])

    assert not runs("m = torch.load('m.pt')") and not runs("m = torch.load('m.pt', weights_only=True)")
    assert runs("m = torch.load('m.pt', weights_only=False)")
    assert runs("m = torch.load('m.pt', weights_only=flag)")
    assert runs("m = torch.load('m.pt', pickle_module=pickle)")
    assert runs("m = pickle.load(open('m.pkl', 'rb'))") and runs("m = joblib.load('m.joblib')")


REBINDS = "import pickle\np = 'evil' + '.pkl'\nran2 = True\nif False:\n    obj = pickle.load(open(p, 'rb'))"


def test_a_path_the_cell_rebinds_is_not_read_from_before_the_cell(ip, files):
    run(ip, "p = 'good.pkl'")
    result, outputs, _, _ = run(ip, REBINDS)
    assert result.success and ip.user_ns["ran2"]
    severities = [f["severity"] for c in card_bundles(outputs) for f in _supply(c)]
    assert "info" not in severities, "the pre-run scan must not vouch for good.pkl when the cell loads evil.pkl"
    assert "critical" in severities, "evil.pkl, the file p names after the cell, is scanned after it runs"


def test_block_policy_fails_closed_on_a_file_it_cannot_locate_before_the_cell(ip, files):
    """Review of the example notebooks: a load whose path is only known at run time ran under block."""
    run(ip, "p = 'good.pkl'")
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, outputs, _, _ = run(ip, REBINDS)
    assert not result.success and "ran2" not in ip.user_ns
    message = str(result.error_in_exec)
    assert "path is only known once the cell runs" in message and "%mlsec scanfile PATH" in message
    titles = [f["title"] for c in card_bundles(outputs) for f in _supply(c)]
    assert titles == ["A model file this cell loads could not be scanned before it ran"]


@pytest.mark.parametrize("cell", [
    "import pickle\nwith open(path, 'rb') as f:\n    obj = pickle.load(f)",
    "import pickle\nf = open(path, 'rb')\nobj = pickle.load(f)",
    "import pickle\nfrom pathlib import Path\nwith Path(path).open('rb') as f:\n    obj = pickle.load(f)",
], ids=["with open(name) as f", "f = open(name) in the cell", "Path(name).open()"])
def test_a_file_opened_in_the_cell_from_a_path_bound_earlier_is_scanned_first(ip, files, cell):
    """Review of the example notebooks: these forms ran the payload under file_policy=block."""
    ip.run_line_magic("mlsec", "config file_policy=block")
    run(ip, "path = 'evil.pkl'")
    result, outputs, _, _ = run(ip, cell)
    assert not result.success and "obj" not in ip.user_ns and not (files / "pwned").exists()
    assert "blocked this cell" in str(result.error_in_exec)
    run(ip, "path = 'good.pkl'")
    result, outputs, _, _ = run(ip, cell)
    assert result.success and ip.user_ns["obj"] == {"weights": [1.0, 2.0], "name": "ok"}
    (finding,) = [f for c in card_bundles(outputs) for f in _supply(c)]
    assert finding["severity"] == "info" and finding["metrics"]["verdict"] == "safe"


def test_a_file_the_cell_writes_is_scanned_after_it_runs(ip, files):
    (files / "evil.pkl").rename(files / "later.bin")
    result, outputs, _, _ = run(ip, "import pickle, shutil\nshutil.copy('later.bin', 'new.pkl')\nif False:\n"
                                    "    obj = pickle.load(open('new.pkl', 'rb'))")
    assert result.success
    severities = [f["severity"] for c in card_bundles(outputs) for f in _supply(c)]
    assert "critical" in severities, severities
    assert not (files / "pwned").exists()


@pytest.mark.parametrize("setup,cell", [
    ("", "import pickle as pk\nif False:\n    obj = pk.load(open('evil.pkl', 'rb'))"),
    ("from joblib import load", "if False:\n    obj = load('evil.pkl')"),
    ("import pickle", "if False:\n    obj = pickle.Unpickler(open('evil.pkl', 'rb')).load()"),
    ("import torch", "if False:\n    obj = torch.serialization.load('evil.pkl', weights_only=False)"),
    ("import pandas\nread_it = pandas.read_pickle", "if False:\n    obj = read_it('evil.pkl')"),
], ids=["import as", "from-import in an earlier cell", "Unpickler().load()", "torch.serialization.load",
        "a loader bound to another name"])
def test_loaders_under_other_names_are_scanned_before_the_cell(ip, files, setup, cell):
    """reliability P13: the loader is recognised through import aliases and names bound by earlier cells."""
    if setup:
        run(ip, setup)
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, outputs, _, _ = run(ip, "ran = True\n" + cell)
    assert not result.success and "ran" not in ip.user_ns, "the cell must be blocked before it runs"
    (finding, *_) = [f for c in card_bundles(outputs) for f in _supply(c)]
    assert finding["severity"] == "critical" and "os.system" in finding["metrics"]["unsafe_globals"]
    assert not (files / "pwned").exists()


def test_a_scan_that_runs_out_of_time_says_so_and_blocks(ip, files):
    with open(files / "big.pkl", "wb") as fh:
        pickle.dump([{"k": i, "v": [float(i)] * 3} for i in range(300_000)], fh, protocol=2)
    ip.run_line_magic("mlsec", "config time_budget=0.01")
    result, outputs, _, _ = run(ip, "import pickle\nran = True\nif False:\n    obj = pickle.load(open('big.pkl', 'rb'))")
    assert result.success and ip.user_ns["ran"]
    (finding,) = [f for c in card_bundles(outputs) for f in _supply(c)]
    assert finding["severity"] == "high" and finding["metrics"]["verdict"] == "incomplete"
    assert finding["title"].startswith("Model file not fully scanned: big.pkl")
    assert "%mlsec scanfile big.pkl" in finding["recommendation"]
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, _, _, _ = run(ip, "ran_again = True\nobj = pickle.load(open('big.pkl', 'rb'))")
    assert not result.success and "ran_again" not in ip.user_ns and "not fully scanned" in str(result.error_in_exec)


def test_a_failing_pre_run_check_blocks_under_block_policy(ip, files, monkeypatch):
    """Fault injection: a bug in the pre-run scan must not wave an unsafe load through (it once did: the
    gate's catch-all let the cell run)."""
    from mlsec_jupyter import preflight

    def broken(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(preflight, "_model_files", broken)
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, outputs, _, _ = run(ip, "import pickle\nobj = pickle.load(open('evil.pkl', 'rb'))")
    assert not result.success and "obj" not in ip.user_ns and not (files / "pwned").exists()
    assert "model file scan failed (RuntimeError: injected)" in str(result.error_in_exec)
    (finding,) = [f for c in card_bundles(outputs) for f in _supply(c)]
    assert finding["title"] == "The model file scan before this cell failed" and finding["severity"] == "high"
    ip.run_line_magic("mlsec", "config file_policy=warn")
    result, outputs, _, _ = run(ip, "ran = True\nif False:\n    obj = pickle.load(open('evil.pkl', 'rb'))")
    assert result.success and ip.user_ns["ran"]
    assert any("The cell ran unchecked" in f["summary"] for c in card_bundles(outputs) for f in _supply(c))


def test_a_path_bound_to_a_literal_in_the_same_cell_is_scanned_before_it_runs(ip, files):
    ip.run_line_magic("mlsec", "config file_policy=block")
    result, _, _, _ = run(ip, "import pickle\np = 'evil.pkl'\nran = True\nobj = pickle.load(open(p, 'rb'))")
    assert not result.success and "ran" not in ip.user_ns and not (files / "pwned").exists()
    result, _, _, _ = run(ip, "f = open('evil.pkl', 'rb')\nran = True\nobj = pickle.load(f)")
    assert not result.success and "ran" not in ip.user_ns and not (files / "pwned").exists()


@pytest.mark.parametrize("cell,func,path", [
    ("x = np.load('a.npy', allow_pickle=1)", "np.load", "a.npy"),
    ("x = np.load('a.npy', allow_pickle=flag)", "np.load", "a.npy"),
    ("x = np.load('a.npy', None, True)", "np.load", "a.npy"),
    ("m = joblib.load(filename='m.joblib')", "joblib.load", "m.joblib"),
    ("m = pickle.load(file=open('m.pkl', 'rb'))", "pickle.load", "m.pkl"),
    ("m = pd.read_pickle(filepath_or_buffer='df.pkl')", "pd.read_pickle", "df.pkl"),
    ("u = pickle.Unpickler(open('m.pkl', 'rb'))\nm = u.load()", "pickle.Unpickler", "m.pkl"),
    ("ld = joblib.load\nm = ld('m.joblib')", "joblib.load", "m.joblib"),
    ("x = np.load('a.npy', **options)", "np.load", "a.npy"),
    ("x = np.lib.format.read_array(open('a.npy', 'rb'), allow_pickle=True)", "np.lib.format.read_array", "a.npy"),
], ids=["allow_pickle=1", "allow_pickle=<name>", "allow_pickle by position", "filename=", "file=",
        "filepath_or_buffer=", "Unpickler in two steps", "loader bound to a name", "**kwargs", "read_array"])
def test_loader_calls_the_cell_parser_sees(cell, func, path):
    """Found in review: these loads were not seen, or their file was not known, before the cell ran."""
    from mlsec_jupyter.watch.cell import parse_cell

    loads = parse_cell(cell).file_loads
    assert [(c.func, c.path) for c in loads] == [(func, path)]
    assert not parse_cell("x = np.load('a.npy')").file_loads and not parse_cell(
        "x = np.load('a.npy', allow_pickle=False)").file_loads


def test_a_load_whose_file_cannot_be_located_says_so(ip, files):
    """Third review: a load with a computed path was skipped without a word."""
    result, outputs, _, _ = run(ip, "import torch\nd = '.'\nif False:\n    m = torch.load(f'{d}/evil.pkl', "
                                    "weights_only=False)")
    assert result.success
    titles = [f["title"] for c in card_bundles(outputs) for f in _supply(c)]
    assert "A model file this cell loads could not be scanned before it ran" in titles, titles


BYPASSES = {  # second review of issue 8: each of these once loaded evil.pkl under file_policy=block
    "a second with rebinds f": "with open(good, 'rb') as f:\n    pass\nwith open(str(evil), 'rb') as f:\n"
                               "    obj = pickle.load(f)",
    "a for loop binds f": "for f in [open(evil, 'rb')]:\n    obj = pickle.load(f)",
    "a walrus rebinds f": "f = open(good, 'rb')\n(f := open(evil, 'rb'))\nobj = pickle.load(f)",
    "a parameter shadows good": "def g(good):\n    with open(good, 'rb') as f:\n        return pickle.load(f)\n"
                                "obj = g(evil)",
    "a lambda parameter": "g = lambda good: pickle.load(open(good, 'rb'))\nobj = g(evil)",
    "a match capture": "match 'evil.pkl':\n    case good:\n        obj = pickle.load(open(good, 'rb'))",
    "os.path.join of a folder": "import os\nobj = pickle.load(open(os.path.join(folder, 'evil.pkl'), 'rb'))",
    "Path(folder, name)": "from pathlib import Path\nobj = pickle.load(open(Path(folder, 'evil.pkl'), 'rb'))",
    "pickle.loads of a file's bytes": "obj = pickle.loads(open('evil.pkl', 'rb').read())",
    "pickle.loads(Path.read_bytes())": "from pathlib import Path\nobj = pickle.loads(Path(evil).read_bytes())",
    "os.chdir before a relative path": "import os\nos.chdir(sub)\nobj = pickle.load(open('evil.pkl', 'rb'))",
    "a file the cell copies first": "import shutil\nshutil.copy('evil.pkl', 'fresh.pkl')\n"
                                    "obj = pickle.load(open('fresh.pkl', 'rb'))",
}


@pytest.mark.parametrize("cell", list(BYPASSES.values()), ids=list(BYPASSES))
def test_block_policy_holds_against_rebinding_shadowing_and_computed_paths(ip, files, cell):
    (files / "sub").mkdir()
    (files / "sub" / "evil.pkl").write_bytes(EVIL)
    ip.run_line_magic("mlsec", "config file_policy=block")
    run(ip, f"import pickle\ngood, evil, folder, sub = 'good.pkl', 'evil.pkl', {str(files)!r}, 'sub'")
    result, _, _, _ = run(ip, cell)
    assert not result.success and "obj" not in ip.user_ns, cell
    assert "blocked this cell" in str(result.error_in_exec) and not (files / "pwned").exists()


def test_safe_forms_are_not_blocked_and_a_helper_only_defined_is_not_run(ip, files):
    ip.run_line_magic("mlsec", "config file_policy=block")
    for cell in ("p = 'good.pkl'\nwith open(p, 'rb') as f:\n    obj = pickle.load(f)",
                 "p = 'good.pkl'\nf = open(p, 'rb')\nobj = pickle.load(f)"):
        result, _, _, _ = run(ip, "import pickle\n" + cell)
        assert result.success and ip.user_ns["obj"] == {"weights": [1.0, 2.0], "name": "ok"}, cell
    # a def the cell only defines runs when a later cell calls it: not blocked, the card says it was not scanned
    result, outputs, _, _ = run(ip, "import pickle\ndef load(p):\n    return pickle.load(open(p, 'rb'))")
    assert result.success
    titles = [f["title"] for c in card_bundles(outputs) for f in _supply(c)]
    assert titles == ["A model file this cell loads could not be scanned before it ran"]
