"""Which published threat a check looks for: every check id mapped to MITRE ATLAS, OWASP and NIST ids.

The single source of the ``references`` on every finding (:class:`~mlsec_jupyter.findings.Finding`
fills them in from :data:`STANDARDS`), of the standards shown on cards, and of the rule tags in
SARIF reports (:mod:`mlsec_jupyter.report`). Three frameworks:

* MITRE ATLAS, the Adversarial Threat Landscape for AI Systems (atlas.mitre.org): technique ids
  ``AML.Txxxx[.yyy]`` with their ATLAS names;
* OWASP Machine Learning Security Top 10, 2023 edition (owasp.org/www-project-machine-learning-security-top-10):
  ``MLxx:2023``;
* NIST AI Risk Management Framework 1.0 (NIST AI 100-1, January 2023): the function (GOVERN, MAP,
  MEASURE, MANAGE) and the subcategory the check produces evidence for, e.g. MEASURE 2.7, "AI system
  security and resilience are evaluated and documented".

Standard library only (DESIGN.md, layer "model").
"""

from __future__ import annotations

from dataclasses import dataclass

ATLAS_NAMES = {
    "AML.T0010.002": "AI Supply Chain Compromise: Data",
    "AML.T0010.003": "AI Supply Chain Compromise: Model",
    "AML.T0011.000": "User Execution: Unsafe AI Artifacts",
    "AML.T0015": "Evade AI Model",
    "AML.T0018.000": "Manipulate AI Model: Poison AI Model",
    "AML.T0020": "Poison Training Data",
    "AML.T0024.000": "Exfiltration via AI Inference API: Infer Training Data Membership",
    "AML.T0024.001": "Exfiltration via AI Inference API: Invert AI Model",
    "AML.T0024.002": "Exfiltration via AI Inference API: Extract AI Model",
    "AML.T0043": "Craft Adversarial Data",
}
OWASP_NAMES = {
    "ML01:2023": "Input Manipulation Attack",
    "ML02:2023": "Data Poisoning Attack",
    "ML03:2023": "Model Inversion Attack",
    "ML04:2023": "Membership Inference Attack",
    "ML05:2023": "Model Theft",
    "ML06:2023": "AI Supply Chain Attacks",
    "ML10:2023": "Model Poisoning",
}
NIST_NAMES = {
    "GOVERN 6.1": "third-party risks (data, models, software) are addressed",
    "MAP 4.1": "legal and technology risks of components, including third-party data, are mapped",
    "MEASURE 2.5": "the system is shown to be valid and reliable",
    "MEASURE 2.7": "security and resilience are evaluated and documented",
    "MEASURE 2.10": "privacy risk is examined and documented",
}


@dataclass(frozen=True)
class Standards:
    """The framework ids one check produces evidence for."""

    atlas: tuple[str, ...]
    owasp: tuple[str, ...]
    nist: tuple[str, ...]

    def references(self) -> tuple[str, ...]:
        """Readable reference strings: ``"MITRE ATLAS AML.T0020 Poison Training Data"``, ..."""
        return (tuple(f"MITRE ATLAS {t} {ATLAS_NAMES[t]}" for t in self.atlas)
                + tuple(f"OWASP {o} {OWASP_NAMES[o]}" for o in self.owasp)
                + tuple(f"NIST AI RMF {n}" for n in self.nist))

    def ids(self) -> tuple[str, ...]:
        """The bare ids (``AML.T0020``, ``ML02:2023``, ``MEASURE 2.7``), e.g. for SARIF rule tags."""
        return self.atlas + self.owasp + self.nist


_POISONING = Standards(("AML.T0020",), ("ML02:2023",), ("MEASURE 2.7",))

#: check id -> the standards it maps to. Every registered built-in check has a row (tested).
STANDARDS: dict[str, Standards] = {
    "data.integrity": Standards(("AML.T0020",), ("ML02:2023",), ("MEASURE 2.5",)),
    "data.duplicates": Standards(("AML.T0020",), ("ML02:2023",), ("MEASURE 2.5", "MEASURE 2.7")),
    "data.outliers": _POISONING,
    "data.label_flips": _POISONING,
    "data.backdoor": Standards(("AML.T0020", "AML.T0018.000"), ("ML02:2023", "ML10:2023"), ("MEASURE 2.7",)),
    "data.provenance": Standards(("AML.T0010.002", "AML.T0020"), ("ML02:2023",), ("MAP 4.1", "GOVERN 6.1")),
    "privacy.dp_budget": Standards(("AML.T0024.000",), ("ML04:2023", "ML03:2023"), ("MEASURE 2.10",)),
    "privacy.membership": Standards(("AML.T0024.000",), ("ML04:2023",), ("MEASURE 2.10",)),
    "robustness.evasion": Standards(("AML.T0015", "AML.T0043"), ("ML01:2023",), ("MEASURE 2.7",)),
    "robustness.noise": Standards(("AML.T0015",), ("ML01:2023",), ("MEASURE 2.5",)),
    "model.extraction": Standards(("AML.T0024.002",), ("ML05:2023",), ("MEASURE 2.7",)),
    "model.inversion": Standards(("AML.T0024.001",), ("ML03:2023",), ("MEASURE 2.10",)),
    "supply.pickle": Standards(("AML.T0011.000", "AML.T0010.003"), ("ML06:2023",), ("GOVERN 6.1", "MAP 4.1")),
}
_NONE = Standards((), (), ())


def standards_for(check: str) -> Standards:
    """The standards of ``check`` (empty for a check id not in the table, e.g. a user's own check)."""
    return STANDARDS.get(check, _NONE)


def references_for(check: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The reference strings of ``check`` followed by ``extra`` ones (a paper), without repeats."""
    return tuple(dict.fromkeys(standards_for(check).references() + tuple(extra)))


__all__ = ["STANDARDS", "Standards", "references_for", "standards_for"]
