"""Shared fixtures: a real in-process IPython shell with the extension loaded, in a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def in_tmp(tmp_path: Path):
    """Run the test with the working directory in a temp folder (audit logs land there)."""
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)


@pytest.fixture
def shell(in_tmp):
    """IPython's test shell (``start_ipython`` returns None after its first call; use get_ipython)."""
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()
    ip.run_line_magic("reset", "-f")
    yield ip
    if "mlsec_jupyter" in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", "mlsec_jupyter")


@pytest.fixture
def ip(shell):
    """The shell with ``%load_ext mlsec_jupyter`` done."""
    shell.run_line_magic("load_ext", "mlsec_jupyter")
    yield shell


def card_bundles(outputs) -> list[dict]:
    """The risk-card JSON payloads among captured display outputs."""
    from mlsec_jupyter.findings import CARD_MIME

    return [o.data[CARD_MIME] for o in outputs if CARD_MIME in o.data]


def run(ip, code: str, cell_id: str | None = None):
    """Run a cell like a user would (``cell_id``: as a front end that names its cells, like JupyterLab);
    returns (result, captured outputs, stdout, stderr)."""
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = ip.run_cell(code, store_history=True, cell_id=cell_id)
    return result, cap.outputs, cap.stdout, cap.stderr


def one_logit_model(n: int = 300):
    """A torch classifier with a single output logit (a sigmoid classifier) that is right on every row:
    ``(X, y, net)`` with ``y = X[:, 0] > 0`` and ``net(x) = 5·x[0]``."""
    import numpy as np
    import torch

    X = np.random.default_rng(0).normal(size=(n, 5)).astype(np.float32)
    net = torch.nn.Linear(5, 1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[5.0, 0, 0, 0, 0]]))
        net.bias.zero_()
    return X, (X[:, 0] > 0).astype(np.int64), net


NOTEBOOKS = Path(__file__).parents[1] / "example-notebooks"


#: Installed in every kernel that runs an example notebook (an IPython startup file): records each network
#: event of the kernel process (CPython audit events) in the file named by ``MLSEC_TEST_SOCKET_LOG`` (S3).
SOCKET_GUARD = """
import json, os, sys

def _mlsec_socket_guard(event, args, _log=os.environ.get("MLSEC_TEST_SOCKET_LOG")):
    if _log and event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
                          "socket.gethostbyname", "socket.gethostbyaddr", "urllib.Request", "http.client.connect"):
        address = args[1] if event in ("socket.connect", "socket.sendto") else args[1:] if event == "http.client.connect" else args[0]
        with open(_log, "a", encoding="utf-8") as out:
            out.write(json.dumps({"event": event, "address": repr(address)}) + "\\n")

if os.environ.get("MLSEC_TEST_SOCKET_LOG"):
    with open(os.environ["MLSEC_TEST_SOCKET_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"event": "guard installed", "pid": os.getpid()}) + "\\n")
    sys.addaudithook(_mlsec_socket_guard)
"""


@pytest.fixture(scope="session")
def executed_notebook_path(tmp_path_factory):
    """``executed_notebook_path("01-quickstart.ipynb")``: the example notebook run once per test session by
    nbclient in a real kernel (in its own temp folder) and saved there with its outputs; later calls reuse it.
    The kernel logs its network events to ``<notebook stem>-network.jsonl`` in a folder of its own (S3), so the
    notebook's folder holds only what the notebook itself wrote."""
    import nbformat
    from nbclient import NotebookClient

    done: dict[str, Path] = {}
    ipython_dir = tmp_path_factory.mktemp("ipython")
    network_logs = tmp_path_factory.mktemp("network")
    (ipython_dir / "profile_default" / "startup").mkdir(parents=True)
    (ipython_dir / "profile_default" / "startup" / "00-socket-guard.py").write_text(SOCKET_GUARD)

    def network_log(name: str) -> Path:
        return network_logs / f"{Path(name).stem}-network.jsonl"

    def execute(name: str) -> Path:
        if name not in done:
            folder = tmp_path_factory.mktemp(Path(name).stem)
            nb = nbformat.read(NOTEBOOKS / name, as_version=4)
            env = {**os.environ, "IPYTHONDIR": str(ipython_dir), "MLSEC_TEST_SOCKET_LOG": str(network_log(name))}
            NotebookClient(nb, timeout=180, kernel_name="python3",
                           resources={"metadata": {"path": str(folder)}}).execute(env=env)
            nbformat.write(nb, folder / name)
            done[name] = folder / name
        return done[name]

    execute.network_log = network_log
    return execute


@pytest.fixture(scope="session")
def executed_notebook(executed_notebook_path):
    """``executed_notebook("01-quickstart.ipynb")``: that executed notebook, read back from its saved file."""
    import nbformat

    return lambda name: nbformat.read(executed_notebook_path(name), as_version=4)


def cards_in(cell) -> list[dict]:
    """The risk cards (card JSON) saved in a notebook cell's outputs."""
    from mlsec_jupyter.findings import CARD_MIME

    return [o["data"][CARD_MIME] for o in cell.get("outputs", []) if CARD_MIME in o.get("data", {})]


def cell_with(nb, text: str):
    """The first code cell whose source contains ``text``."""
    return next(c for c in nb.cells if c.cell_type == "code" and text in c.source)


SARIF_SCHEMA_NAME = "sarif-schema-2.1.0.json"


def sarif_schema() -> dict:
    """The official OASIS SARIF 2.1.0 JSON schema. A copy lives beside the project in ``shared/data``
    (it is not committed here); ``MLSEC_SARIF_SCHEMA`` may point at another copy."""
    import json

    here = Path(__file__).resolve().parents[1]
    candidates = [os.environ.get("MLSEC_SARIF_SCHEMA"), here.parent / "shared" / "data" / SARIF_SCHEMA_NAME,
                  Path("/work/shared/data") / SARIF_SCHEMA_NAME]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return json.loads(Path(candidate).read_text(encoding="utf-8"))
    pytest.skip(f"the SARIF schema copy ({SARIF_SCHEMA_NAME}) is not on this machine; set MLSEC_SARIF_SCHEMA")


def assert_valid_sarif(log: dict) -> None:
    """``log`` validates against the SARIF 2.1.0 schema, and its rules and results agree."""
    import jsonschema

    run_ = log["runs"][0]
    rules = run_["tool"]["driver"]["rules"]
    assert log["version"] == "2.1.0" and len({r["id"] for r in rules}) == len(rules)
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("none", "note", "warning", "error")
    validator = jsonschema.Draft7Validator(sarif_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]
