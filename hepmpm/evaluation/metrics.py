"""Tagger metrics from class scores: accuracy, AUCs, background rejection, confusion matrix.

Conventions follow JetClass / Particle Transformer (Qu et al. 2022):

- **One-vs-QCD** metrics of a signal class ``s`` use only the jets of ``s`` and of QCD, scored by
  ``p_s / (p_s + p_QCD)``.
- **Background rejection** at signal efficiency ``eps_S`` is ``1 / eps_B``, with ``eps_B`` the
  fraction of QCD jets passing the loosest cut on that score that keeps at least ``eps_S`` of the
  signal jets (no interpolation between ROC points). It is ``inf`` when no QCD jet passes.
  Reported at 50% and 99% for every class, and at the class's JetClass working point
  (:data:`JETCLASS_WORKING_POINTS`: 99% for H→lνqq', 99.5% for t→blν, else 50%).
- **Macro AUC**: the mean over classes of the one-vs-rest AUC of ``p_c``, as scikit-learn's
  ``roc_auc_score(multi_class="ovr", average="macro")``.

ROC curves and AUCs are scikit-learn's (:func:`sklearn.metrics.roc_curve`,
:func:`~sklearn.metrics.roc_auc_score`). A class without jets in the evaluated sample gets
``None`` for its metrics and is listed in ``absent_classes``; the macro AUC then averages the
classes present.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from hepmpm.errors import HepmpmError

#: Name of the background class of the one-vs-QCD metrics.
BACKGROUND = "QCD"

#: Signal efficiency at which JetClass/ParT quote each class's QCD rejection (default 0.5).
JETCLASS_WORKING_POINTS: dict[str, float] = {"Hqql": 0.99, "Tbl": 0.995}

#: Signal efficiencies at which every class's rejection is reported.
EFFICIENCIES: tuple[float, ...] = (0.5, 0.99)


def background_rejection(
    signal_scores: np.ndarray, background_scores: np.ndarray, efficiency: float
) -> float:
    """``1 / eps_B`` at signal efficiency ``efficiency`` (in (0, 1]); ``inf`` if ``eps_B == 0``.

    ``signal_scores`` [S] and ``background_scores`` [B]: a higher score is more signal-like.
    """
    if not 0 < efficiency <= 1:
        raise ValueError(f"efficiency must be in (0, 1], got {efficiency}")
    if len(signal_scores) == 0 or len(background_scores) == 0:
        raise ValueError("background_rejection needs signal and background jets")
    truth = np.concatenate([np.ones(len(signal_scores)), np.zeros(len(background_scores))])
    # Every threshold kept: dropping collinear ROC points would move the cut.
    fpr, tpr, _ = roc_curve(
        truth, np.concatenate([signal_scores, background_scores]), drop_intermediate=False
    )
    # tpr rises along the curve: the first point reaching the efficiency is the loosest cut.
    eps_b = float(fpr[np.searchsorted(tpr, efficiency - 1e-12)])
    return float("inf") if eps_b == 0 else 1.0 / eps_b


def versus_background_score(scores: np.ndarray, signal: int, background: int) -> np.ndarray:
    """``p_s / (p_s + p_B)`` per jet [N] from class scores [N, C] (0.5 where both are 0)."""
    s, b = scores[:, signal], scores[:, background]
    total = s + b
    return np.divide(s, total, out=np.full(len(s), 0.5), where=total > 0)


def _check(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> None:
    if scores.ndim != 2 or labels.ndim != 1 or len(scores) != len(labels):
        raise HepmpmError(
            f"metrics need scores [N, C] and labels [N]; got {scores.shape} and {labels.shape}"
        )
    if scores.shape[1] != len(class_names):
        raise HepmpmError(
            f"scores have {scores.shape[1]} classes, but {len(class_names)} class names were given"
        )
    if len(labels) == 0:
        raise HepmpmError("metrics need at least one jet")
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise HepmpmError(
            f"labels must be class positions 0..{len(class_names) - 1}; "
            f"found {labels.min()}..{labels.max()}"
        )


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Metrics of class scores ``scores`` [N, C] (probabilities, rows summing to 1) for true
    class positions ``labels`` [N] (0..C-1, output ``c`` is class ``class_names[c]``).

    Returns a JSON-ready dict: ``n_jets``, ``accuracy``, ``macro_auc``, ``class_names``,
    ``absent_classes``, ``confusion_matrix`` (rows: true class, columns: predicted, counts),
    and ``per_class[name]`` with ``n_jets``, ``auc`` (one-vs-rest) and, when QCD is among
    the classes and both it and the class have jets, ``auc_vs_qcd``, ``rejection_50``,
    ``rejection_99``, ``working_point`` and ``rejection_at_working_point`` (else ``None``).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    class_names = list(class_names)
    _check(scores, labels, class_names)
    n_classes = len(class_names)
    counts = np.bincount(labels, minlength=n_classes)
    present = [c for c in range(n_classes) if counts[c] > 0]
    background = class_names.index(BACKGROUND) if BACKGROUND in class_names else None

    per_class: dict[str, dict[str, Any]] = {}
    for c, name in enumerate(class_names):
        entry: dict[str, Any] = {"n_jets": int(counts[c]), "auc": None}
        # One-vs-rest needs jets of the class and of some other class.
        if 0 < counts[c] < len(labels):
            entry["auc"] = float(roc_auc_score(labels == c, scores[:, c]))
        if background is not None and c != background:
            entry.update(_versus_background(scores, labels, c, background, name))
        per_class[name] = entry
    aucs = [per_class[class_names[c]]["auc"] for c in present]
    aucs = [a for a in aucs if a is not None]
    predicted = scores.argmax(axis=1)
    return {
        "n_jets": len(labels),
        "accuracy": float((predicted == labels).mean()),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "class_names": class_names,
        "absent_classes": [class_names[c] for c in range(n_classes) if counts[c] == 0],
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(n_classes)).tolist(),
    }


def _versus_background(
    scores: np.ndarray, labels: np.ndarray, signal: int, background: int, name: str
) -> dict[str, Any]:
    working_point = JETCLASS_WORKING_POINTS.get(name, 0.5)
    keys = [f"rejection_{round(e * 100)}" for e in EFFICIENCIES]
    entry: dict[str, Any] = {"auc_vs_qcd": None, **dict.fromkeys(keys)}
    entry.update(working_point=working_point, rejection_at_working_point=None)
    keep = (labels == signal) | (labels == background)
    score = versus_background_score(scores[keep], signal, background)
    is_signal = labels[keep] == signal
    if is_signal.all() or not is_signal.any():
        return entry  # no signal or no QCD jets: nothing to compare
    entry["auc_vs_qcd"] = float(roc_auc_score(is_signal, score))
    sig, bkg = score[is_signal], score[~is_signal]
    for key, efficiency in zip(keys, EFFICIENCIES, strict=True):
        entry[key] = background_rejection(sig, bkg, efficiency)
    entry["rejection_at_working_point"] = background_rejection(sig, bkg, working_point)
    return entry


def mean_rejection(test: dict[str, Any], key: str = "rejection_50") -> float:
    """Mean over the signal classes of the QCD rejection ``key`` of a
    :func:`classification_metrics` result. An unbounded rejection (no
    QCD jet passes) counts as the number of QCD test jets, the bound the sample can show."""
    per_class = test["per_class"]
    n_qcd = per_class.get("QCD", {}).get("n_jets", 0)
    values = [
        entry[key]
        for name, entry in per_class.items()
        if name != BACKGROUND and entry.get(key) is not None
    ]
    return _bounded_mean(values, n_qcd)


def mean_rejection_of_scores(
    scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], efficiency: float = 0.5
) -> float:
    """:func:`mean_rejection` straight from scores [N, C] and class positions [N] at one
    signal ``efficiency``, without the rest of :func:`classification_metrics` (for the many
    evaluations of a bootstrap); ``nan`` without QCD jets or without any signal jet."""
    names = list(class_names)
    background = names.index(BACKGROUND)
    is_background = labels == background
    values = []
    for c in range(len(names)):
        is_signal = labels == c
        if c == background or not is_signal.any() or not is_background.any():
            continue
        score = versus_background_score(scores, c, background)
        values.append(background_rejection(score[is_signal], score[is_background], efficiency))
    return _bounded_mean(values, int(is_background.sum()))


def _bounded_mean(rejections: Sequence[float], n_background: int) -> float:
    """The mean of ``rejections``, each at most ``n_background`` (an unbounded one: no QCD jet
    passes, the bound the sample can show); ``nan`` when there are none."""
    values = [min(r, float(n_background)) for r in rejections]
    return float(np.mean(values)) if values else float("nan")


def summary_line(metrics: dict[str, Any]) -> str:
    """One line: accuracy, macro AUC and each class's QCD rejection at its working point."""
    auc = metrics["macro_auc"]
    parts = [
        f"accuracy {metrics['accuracy']:.4f}",
        f"macro AUC {auc:.4f}" if auc is not None else "macro AUC n/a",
    ]
    rejections = [
        f"{name} {entry['rejection_at_working_point']:.3g}@{entry['working_point']:.3g}"
        for name, entry in metrics["per_class"].items()
        if entry.get("rejection_at_working_point") is not None
    ]
    if rejections:
        parts.append("QCD rejection " + ", ".join(rejections))
    if metrics["absent_classes"]:
        parts.append(f"no test jets of {', '.join(metrics['absent_classes'])}")
    return "; ".join(parts)
