"""What pre-training buys, as the quickstart measures it: every tagger it trained (pre-trained
and from scratch, at each label count) scored on the test split of ``sim`` and of ``data``.

Each arm's accuracy carries its binomial error and its mean QCD rejection at 50% signal
efficiency a bootstrap error (:mod:`hepmpm.evaluation.uncertainty`). The difference between the
pre-trained and the scratch tagger at the same labels is bootstrapped over the same resampled
test jets (paired): both arms are scored on the same jets, so its error is smaller than the two
errors combined. These are test-set errors of one training seed; the seed-to-seed spread is the
label-efficiency study's to measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hepmpm.evaluation.metrics import mean_rejection_of_scores as _rejection
from hepmpm.evaluation.uncertainty import binomial_error, bootstrap
from hepmpm.quickstart.config import QuickstartConfig
from hepmpm.quickstart.layout import Layout

DOMAINS = ("sim", "data")
#: Bootstrap resamples of every rejection and difference (seconds on 1000 test jets).
RESAMPLES = 200


def _spread(values: np.ndarray) -> float:
    """The standard deviation of bootstrap values, over the resamples where the statistic
    exists (a small test set can resample away every QCD or every signal jet)."""
    finite = values[np.isfinite(values)]
    return float(finite.std()) if len(finite) > 1 else float("nan")


def arm_scores(
    layout: Layout, config: QuickstartConfig
) -> dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray, list[str]]]:
    """(arm, labels, domain) → scores [N, C], true class positions [N] and class names of that
    tagger on the domain's test split (torch, CPU)."""
    from hepmpm.evaluation.scoring import test_scores
    from hepmpm.models.store import load_tagger

    scored = {}
    for arm, n in config.arms():
        tagger, record = load_tagger(layout.tagger(arm, n))
        for domain in DOMAINS:
            scored[arm, n, domain] = test_scores(tagger, layout.skim(domain), record["labels"])
    return scored


def arm_row(scores: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Test jets, accuracy ± binomial error, mean rejection ± bootstrap error of one tagger."""
    accuracy = float((scores.argmax(1) == truth).mean())
    rejections = bootstrap(lambda i: _rejection(scores[i], truth[i], names), len(truth), RESAMPLES)
    return {
        "jets": len(truth),
        "accuracy": accuracy,
        "accuracy_error": binomial_error(accuracy, len(truth)),
        "mean_rejection_50": _rejection(scores, truth, names),
        "mean_rejection_50_error": _spread(rejections),
    }


def difference_row(
    scores: np.ndarray, reference: np.ndarray, truth: np.ndarray, names: list[str]
) -> dict[str, Any]:
    """``scores`` − ``reference`` (two taggers' scores [N, C] on the same jets) in accuracy and
    mean rejection, each ± its paired bootstrap error."""
    right, right_reference = scores.argmax(1) == truth, reference.argmax(1) == truth

    def rejection_gain(i: np.ndarray) -> float:
        return _rejection(scores[i], truth[i], names) - _rejection(reference[i], truth[i], names)

    accuracy = bootstrap(lambda i: right[i].mean() - right_reference[i].mean(), len(truth))
    rejection = bootstrap(rejection_gain, len(truth), RESAMPLES)
    return {
        "jets": len(truth),
        "accuracy_difference": float(right.mean() - right_reference.mean()),
        "accuracy_difference_error": float(accuracy.std()),
        "mean_rejection_50_difference": rejection_gain(np.arange(len(truth))),
        "mean_rejection_50_difference_error": _spread(rejection),
    }


def gain_rows(
    scored: dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray, list[str]]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per arm, labels and domain: :func:`arm_row`; per labels and domain where both arms ran:
    pre-trained − scratch (:func:`difference_row`)."""
    arms = [
        {"arm": arm, "labels": n, "domain": domain, **arm_row(*values)}
        for (arm, n, domain), values in scored.items()
    ]
    differences = [
        {"labels": n, "domain": domain,
         **difference_row(scores, scored["scratch", n, domain][0], truth, names)}
        for (arm, n, domain), (scores, truth, names) in scored.items()
        if arm == "pretrained" and ("scratch", n, domain) in scored
    ]  # fmt: skip
    return arms, differences


def gain_table(
    arms: list[dict[str, Any]], differences: list[dict[str, Any]]
) -> tuple[list[str], list[list[object]]]:
    """The report's table: one row per label count and domain."""
    header = ["labels", "domain", "test jets", "pre-trained accuracy", "scratch accuracy",
              "difference", "pre-trained rejection", "scratch rejection"]  # fmt: skip
    by_key = {(r["arm"], r["labels"], r["domain"]): r for r in arms}
    diff = {(r["labels"], r["domain"]): r for r in differences}
    rows: list[list[object]] = []
    for n in sorted({r["labels"] for r in arms}):
        for domain in DOMAINS:
            pre, scratch = by_key[("pretrained", n, domain)], by_key.get(("scratch", n, domain))
            d = diff.get((n, domain))
            rows.append(
                [n, domain, pre["jets"],
                 _pm(pre["accuracy"], pre["accuracy_error"]),
                 _pm(scratch["accuracy"], scratch["accuracy_error"]) if scratch else "-",
                 _pm(d["accuracy_difference"], d["accuracy_difference_error"], sign=True)
                 if d else "-",
                 _pm(pre["mean_rejection_50"], pre["mean_rejection_50_error"], 1),
                 _pm(scratch["mean_rejection_50"], scratch["mean_rejection_50_error"], 1)
                 if scratch else "-"]
            )  # fmt: skip
    return header, rows


def _pm(value: float, error: float, digits: int = 3, sign: bool = False) -> str:
    return f"{value:{'+' if sign else ''}.{digits}f} ± {error:.{digits}f}"


def gain_lines(differences: list[dict[str, Any]], init: str | None) -> list[str]:
    """The section's reading: where the difference exceeds twice its error, and where not."""
    start = f"the backbone shipped as `{init}`" if init else "a backbone pre-trained from scratch"
    lines = [
        f"The pre-trained arm starts from {start}, pre-trained further on the unlabelled `data` "
        "sample, and is fine-tuned on the labelled `sim` jets; the scratch arm trains the same "
        "tagger from random weights on the same jets and step budget, with its own learning "
        "rate. Both are tested at their best validation step, on the same test jets.",
        "Errors: binomial on accuracy, bootstrap (200 resamples) on the mean QCD rejection at "
        "50% signal efficiency; the difference is bootstrapped over the same jets for both arms. "
        "They are test-set errors of one training seed; the seed-to-seed spread, measured over "
        "three to six seeds in docs/results/label-efficiency*, is larger at the fewest labels.",
    ]
    for d in differences:
        delta, error = d["accuracy_difference"], d["accuracy_difference_error"]
        verdict = (
            ("pre-trained better" if delta > 0 else "scratch better")
            + " by more than twice the error"
            if abs(delta) > 2 * error
            else "within twice the test-set error"
        )
        lines.append(
            f"{d['labels']} labels, {d['domain']}: accuracy {delta:+.3f} ± {error:.3f} ({verdict})."
        )
    return lines


def curves_vs_labels(arms: list[dict[str, Any]], key: str, ylabel: str, path: Path) -> Path:
    """Each arm's ``key`` (``accuracy``, ``mean_rejection_50``) ± its error against the labelled
    jets, one curve per arm and domain."""
    from hepmpm.evaluation.plots import mean_std_curves

    labels = sorted({r["labels"] for r in arms})
    curves = {}
    for arm in ("pretrained", "scratch"):
        for domain in DOMAINS:
            rows = {r["labels"]: r for r in arms if (r["arm"], r["domain"]) == (arm, domain)}
            if len(rows) == len(labels):
                values = [(rows[n][key], rows[n][f"{key}_error"]) for n in labels]
                curves[f"{arm}, {domain}"] = tuple(map(list, zip(*values, strict=True)))
    return mean_std_curves(labels, curves, path, "labelled sim jets", ylabel)
