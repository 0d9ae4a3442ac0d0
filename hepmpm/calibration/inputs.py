"""The per-jet scores of a ``hepmpm tag`` folder, and the check that two folders share a model.

A folder holds ``summary.json`` (the model's metadata, ``model_sha256``) and
``scores/<dataset>/*.parquet`` (one row per tagged jet: ``label``, ``jet_pt`` / GeV,
``jet_eta``, ``score_<class>``; see :mod:`hepmpm.processors.tagger`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hepmpm.errors import HepmpmError
from hepmpm.evaluation.metrics import versus_background_score
from hepmpm.jetclass import CLASS_INDEX

SUMMARY_NAME, SCORES_SUBDIR = "summary.json", "scores"


@dataclass(frozen=True)
class TaggedJets:
    """The jets of one tagging folder [N]: truth ``label`` (−1 unknown), ``pt`` / GeV, ``eta``
    and the class probabilities ``probs`` [N, C] in the order of ``class_names``."""

    folder: Path
    summary: dict[str, Any]
    class_names: tuple[str, ...]
    label: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    probs: np.ndarray

    @property
    def abseta(self) -> np.ndarray:
        return np.abs(self.eta)

    def select(self, expression: str, flag: str) -> np.ndarray:
        """The jets [N] (bool) passing ``expression``, a pandas expression over the columns
        ``jet_pt`` (GeV), ``jet_eta``, ``abseta`` and ``score_<class>``, e.g.
        ``"jet_pt < 600 and abseta < 1.5"``; a clear error names ``flag`` when it is not one."""
        import pandas as pd

        columns = {"jet_pt": self.pt, "jet_eta": self.eta, "abseta": self.abseta}
        columns |= {f"score_{c}": self.probs[:, i] for i, c in enumerate(self.class_names)}
        try:
            passed = pd.DataFrame(columns).eval(expression)
        except Exception as err:  # pandas raises many kinds for a bad expression
            raise HepmpmError(
                f"{flag} {expression!r}: not a selection over {', '.join(columns)} ({err})"
            ) from None
        if not isinstance(passed, pd.Series) or passed.dtype != bool:
            raise HepmpmError(f"{flag} {expression!r}: must be a true/false condition per jet")
        return passed.to_numpy()

    def class_index(self, name: str, role: str) -> int:
        if name not in self.class_names:
            raise HepmpmError(
                f"{self.folder}: the model has no class {name!r} ({role}); its classes are "
                f"{', '.join(self.class_names)}"
            )
        return self.class_names.index(name)

    def is_class(self, name: str, role: str) -> np.ndarray:
        """The jets [N] (bool) whose truth is class ``name``. The truth ``label`` is the JetClass
        index (``FatJet_truthLabel``), not the position of ``name`` among the model's outputs:
        a QCD/Wqq tagger's output 1 is Wqq, truth label 1 is Hbb."""
        return self.label == truth_label(name, role)

    def discriminant(self, signal: str, background: str) -> np.ndarray:
        """``p_s / (p_s + p_B)`` per jet [N] (the metrics' one-vs-background score)."""
        return versus_background_score(
            self.probs,
            self.class_index(signal, "--signal"),
            self.class_index(background, "--background"),
        )


def truth_label(name: str, role: str) -> int:
    """The JetClass truth label of class ``name`` (a clear error if it is not a JetClass name)."""
    if name not in CLASS_INDEX:
        raise HepmpmError(
            f"{role} {name!r} is not a JetClass class ({', '.join(CLASS_INDEX)}): its jets cannot "
            "be found by truth label"
        )
    return CLASS_INDEX[name]


def model_identity(summary: dict[str, Any]) -> str:
    """What identifies the tagging model: its file's SHA-256, else its config hash + path."""
    return summary.get("model_sha256") or f"{summary.get('config_hash')}:{summary.get('model')}"


def read_tagged(folder: Path) -> TaggedJets:
    """The tagged jets of ``folder`` (a ``hepmpm tag --out`` folder, scores written)."""
    folder = Path(folder)
    summary_path = folder / SUMMARY_NAME
    if not summary_path.is_file():
        raise HepmpmError(f"{folder}: no {SUMMARY_NAME}; expected a `hepmpm tag --out` folder")
    try:
        summary = json.loads(summary_path.read_text())
        class_names = tuple(summary["class_names"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise HepmpmError(f"{summary_path}: not a tagging summary ({err!r})") from None
    files = sorted((folder / SCORES_SUBDIR).rglob("*.parquet"))
    if not files:
        raise HepmpmError(
            f"{folder}: no per-jet scores under {SCORES_SUBDIR}/ (was it tagged with --no-scores?)"
        )
    needed = ["label", "jet_pt", "jet_eta", *(f"score_{c}" for c in class_names)]
    try:
        table = pa.concat_tables([pq.read_table(f, columns=needed) for f in files])
    except (pa.ArrowInvalid, KeyError) as err:
        raise HepmpmError(
            f"{folder}: scores files lack the columns {', '.join(needed)} ({err})"
        ) from None
    column = lambda name: table[name].to_numpy()  # noqa: E731
    return TaggedJets(
        folder=folder,
        summary=summary,
        class_names=class_names,
        label=column("label").astype(np.int64),
        pt=column("jet_pt").astype(np.float64),
        eta=column("jet_eta").astype(np.float64),
        probs=np.stack([column(f"score_{c}") for c in class_names], axis=1).astype(np.float64),
    )


def check_same_model(sim: TaggedJets, data: TaggedJets) -> None:
    """Both folders were tagged by the same model (same file hash), with the same classes."""
    if model_identity(sim.summary) != model_identity(data.summary):
        raise HepmpmError(
            f"{sim.folder} and {data.folder} were tagged by different models "
            f"({sim.summary.get('model')}, sha256 {str(sim.summary.get('model_sha256'))[:12]}; "
            f"{data.summary.get('model')}, sha256 {str(data.summary.get('model_sha256'))[:12]}); "
            "scale factors need one model"
        )
    if sim.class_names != data.class_names:
        raise HepmpmError(f"{sim.folder} and {data.folder} have different class lists")
