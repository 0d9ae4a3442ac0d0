"""What pre-training (and adapting to data) buys, as the quickstart measures it: every tagger it
trained (pre-trained, adapted, from scratch, at each label count) scored on the test split of
``sim`` and of ``data``.

Each arm's accuracy carries its binomial error and its mean QCD rejection at 50% signal
efficiency a bootstrap error (:mod:`hepmpm.evaluation.uncertainty`). The difference between two
arms at the same labels (each against scratch, adapted against pre-trained) is bootstrapped over
the same resampled test jets (paired): both arms are scored on the same jets, so its error is
smaller than the two errors combined. The data/sim scale factors of each tagger come from the
pseudo-data's truth (:mod:`hepmpm.calibration.truth_scale_factors`). These are test-set errors
of one training seed; the seed-to-seed spread is the studies' to measure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hepmpm.calibration.truth_scale_factors import ScaleFactorConfig, scale_factor_values
from hepmpm.calibration.working_points import WorkingPointSpec
from hepmpm.evaluation.metrics import mean_rejection_of_scores as _rejection
from hepmpm.evaluation.uncertainty import binomial_error, bootstrap
from hepmpm.quickstart.config import ARMS, QuickstartConfig
from hepmpm.quickstart.layout import Layout

DOMAINS = ("sim", "data")
#: The differences the report shows: (arm, reference), where both were trained.
COMPARISONS = (("pretrained", "scratch"), ("adapted", "scratch"), ("adapted", "pretrained"))
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
    """Per arm, labels and domain: :func:`arm_row`; per labels, domain and pair of
    :data:`COMPARISONS` where both arms ran: arm − reference (:func:`difference_row`)."""
    arms = [
        {"arm": arm, "labels": n, "domain": domain, **arm_row(*values)}
        for (arm, n, domain), values in scored.items()
    ]
    differences = [
        {"arm": arm, "reference": reference, "labels": n, "domain": domain,
         **difference_row(scores, scored[reference, n, domain][0], truth, names)}
        for arm, reference in COMPARISONS
        for (name, n, domain), (scores, truth, names) in scored.items()
        if name == arm and (reference, n, domain) in scored
    ]  # fmt: skip
    return arms, differences


def gain_table(
    arms: list[dict[str, Any]], differences: list[dict[str, Any]]
) -> tuple[list[str], list[list[object]]]:
    """The report's table: one row per label count and domain, each arm's accuracy, the
    differences, each arm's mean rejection."""
    names = _arms_in(arms)
    pairs = [(a, r) for a, r in COMPARISONS if a in names and r in names]
    header = ["labels", "domain", "test jets",
              *(f"{a} accuracy" for a in names), *(f"{a} − {r}" for a, r in pairs),
              *(f"{a} rejection" for a in names)]  # fmt: skip
    by_key = {(r["arm"], r["labels"], r["domain"]): r for r in arms}
    diff = {(r["arm"], r["reference"], r["labels"], r["domain"]): r for r in differences}
    rows: list[list[object]] = []
    for n in sorted({r["labels"] for r in arms}):
        for domain in DOMAINS:
            row = [by_key[a, n, domain] for a in names]
            rows.append(
                [n, domain, row[0]["jets"],
                 *(_pm(r["accuracy"], r["accuracy_error"]) for r in row),
                 *(_pm(d["accuracy_difference"], d["accuracy_difference_error"], sign=True)
                   for d in (diff[a, r, n, domain] for a, r in pairs)),
                 *(_pm(r["mean_rejection_50"], r["mean_rejection_50_error"], 1) for r in row)]
            )  # fmt: skip
    return header, rows


def scale_factor_rows(
    scored: dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray, list[str]]],
    config: ScaleFactorConfig,
) -> list[dict[str, Any]]:
    """Per arm and labels: the data/sim scale factors of that tagger (signal efficiency and
    background mistag at each working point, :func:`scale_factor_values`), its test jets of
    ``sim`` against those of ``data``."""
    return [
        {"arm": arm, "labels": n,
         **scale_factor_values(sim[:2], scored[arm, n, "data"][:2], sim[2], config)}
        for (arm, n, domain), sim in scored.items()
        if domain == "sim"
    ]  # fmt: skip


def scale_factor_table(
    rows: list[dict[str, Any]], config: ScaleFactorConfig
) -> tuple[list[str], list[list[object]]]:
    """One row per label count and scale factor, one column per arm: SF ± error."""
    names = _arms_in(rows)
    by_key = {(r["arm"], r["labels"]): r for r in rows}
    table: list[list[object]] = []
    for n in sorted({r["labels"] for r in rows}):
        for signal in config.signals:
            for target in config.mistag:
                wp = WorkingPointSpec("mistag", target).name
                for panel, what in (("eff", f"{signal} efficiency"),
                                    ("mistag", f"{config.background} mistag")):  # fmt: skip
                    base = f"{signal}_{panel}_{wp}"
                    cells = [by_key[a, n] for a in names]
                    table.append(
                        [n, f"{what} at {target:.0%} {config.background} mistag ({signal} vs "
                         f"{config.background})",
                         *(_sf(c[f"sf_{base}"], c[f"sf_err_{base}"]) for c in cells)]
                    )  # fmt: skip
    return ["labels", "data/sim scale factor", *names], table


def _arms_in(rows: list[dict[str, Any]]) -> list[str]:
    """The arms that ``rows`` hold, in :data:`ARMS` order."""
    return [arm for arm in ARMS if any(r["arm"] == arm for r in rows)]


def _sf(value: float, error: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.2f} ± {error:.2f}"


def _pm(value: float, error: float, digits: int = 3, sign: bool = False) -> str:
    return f"{value:{'+' if sign else ''}.{digits}f} ± {error:.{digits}f}"


def gain_lines(
    differences: list[dict[str, Any]], backbone: str, adapted: bool, config: ScaleFactorConfig
) -> list[str]:
    """The section's reading: where each difference exceeds twice its error, and where not."""
    lines = [
        f"The pre-trained arm fine-tunes the backbone `{backbone}` (pre-trained without labels) "
        "on the labelled `sim` jets"
        + (
            "; the adapted arm is the same fine-tuning with the unlabelled `data` jets in every "
            "step, the backbone trained adversarially so that its jet embedding does not tell "
            "them from `sim` jets (DANN; no data label is read)"
            if adapted
            else ""
        )
        + "; the scratch arm trains the same tagger from random weights on the same jets and "
        "step budget, with its own learning rate. All are tested at their best validation step "
        "(on `sim`), on the same test jets.",
        "Errors: binomial on accuracy, bootstrap (200 resamples) on the mean QCD rejection at "
        "50% signal efficiency; each difference is bootstrapped over the same jets for both "
        "arms. They are test-set errors of one training seed; the seed-to-seed spread, measured "
        "over three to six seeds in docs/results/, is larger at the fewest labels.",
        "Scale factors: data/sim efficiency at the working point fixed on `sim` "
        f"({', '.join(f'{m:.0%}' for m in config.mistag)} {config.background} mistag), one bin "
        "(500-1000 GeV), from the pseudo-data's truth, Clopper-Pearson errors; an analysis "
        "pays |SF − 1| as a systematic, so closer to 1 is better.",
    ]
    for d in differences:
        delta, error = d["accuracy_difference"], d["accuracy_difference_error"]
        verdict = (
            (f"{d['arm']} better" if delta > 0 else f"{d['reference']} better")
            + " by more than twice the error"
            if abs(delta) > 2 * error
            else "within twice the test-set error"
        )
        lines.append(
            f"{d['labels']} labels, {d['domain']}, {d['arm']} − {d['reference']}: accuracy "
            f"{delta:+.3f} ± {error:.3f} ({verdict})."
        )
    return lines


def curves_vs_labels(arms: list[dict[str, Any]], key: str, ylabel: str, path: Path) -> Path:
    """Each arm's ``key`` (``accuracy``, ``mean_rejection_50``) ± its error against the labelled
    jets, one curve per arm and domain."""
    from hepmpm.evaluation.plots import mean_std_curves

    labels = sorted({r["labels"] for r in arms})
    curves = {}
    for arm in ARMS:
        for domain in DOMAINS:
            rows = {r["labels"]: r for r in arms if (r["arm"], r["domain"]) == (arm, domain)}
            if len(rows) == len(labels):
                values = [(rows[n][key], rows[n][f"{key}_error"]) for n in labels]
                curves[f"{arm}, {domain}"] = tuple(map(list, zip(*values, strict=True)))
    return mean_std_curves(labels, curves, path, "labelled sim jets", ylabel)
