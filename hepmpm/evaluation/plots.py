"""Plots shared by the studies and the quickstart report, in mplhep's CMS style.

Every function takes plain arrays (or ``hist.Hist`` objects), draws one figure, writes it as a
PNG atomically and returns the path. Histograms are filled with ``hist``; ROC curves come from
scikit-learn. Nothing here reads files other than Lightning's CSV logs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import hist
import matplotlib

matplotlib.use("Agg")  # files only: the studies run on batch nodes without a display
import matplotlib.pyplot as plt
import mplhep
import numpy as np
from matplotlib.ticker import NullFormatter
from sklearn.metrics import roc_curve

from hepmpm.atomic import atomic_path
from hepmpm.evaluation.metrics import versus_background_score

LINE_STYLES = ("-", "--", ":", "-.")


#: Markers of the curves of one plot, in turn.
CURVE_MARKERS = ("o", "s", "D", "^", "v", "P")


def new_figure(ncols: int = 1, nrows: int = 1, size: float = 5.0) -> tuple[plt.Figure, np.ndarray]:
    plt.style.use(mplhep.style.CMS)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, layout="constrained"
    )
    return fig, axes


def save_figure(fig: plt.Figure, path: Path, text: str = "Simulation") -> Path:
    # CMS-like style, but labelled as hepmpm's own: these are not CMS results.
    mplhep.label.exp_label(exp="hepmpm", llabel=text, rlabel="", ax=fig.axes[0], fontsize=14)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path


def feature_comparison(
    samples: Mapping[str, np.ndarray], feature_names: Sequence[str], path: Path, bins: int = 40
) -> Path:
    """Normalised distributions of every particle feature, one curve per sample.

    ``samples`` maps a label (e.g. ``sim``, ``data``) to flat particle features [n, F] in the
    order of ``feature_names``; the binning of each feature covers the 0.5-99.5% range of all
    samples together.
    """
    n = len(feature_names)
    ncols = min(4, n)
    fig, axes = new_figure(ncols, math.ceil(n / ncols), size=3.6)
    for i, name in enumerate(feature_names):
        ax = axes.flat[i]
        values = np.concatenate([s[:, i] for s in samples.values()])
        finite = values[np.isfinite(values)]
        low, high = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0.0, 1.0)
        if high <= low:
            low, high = low - 0.5, high + 0.5
        for (label, sample), style in zip(samples.items(), LINE_STYLES * 4, strict=False):
            h = hist.Hist(hist.axis.Regular(bins, low, high, name=name))
            h.fill(np.clip(sample[:, i], low, high - 1e-9 * (high - low)))
            mplhep.histplot(h, ax=ax, density=True, yerr=False, label=label, linestyle=style)
        ax.set_xlabel(name, fontsize=11)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=9)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return save_figure(fig, path)


def read_lightning_metrics(csv_paths: Sequence[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Columns of Lightning ``metrics.csv`` files (a resumed run writes one per attempt):
    name → (steps, values), empty cells dropped."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for csv_path in csv_paths:
        with Path(csv_path).open() as handle:
            for row in csv.DictReader(handle):
                step = float(row.get("step") or "nan")
                for key, value in row.items():
                    if key in ("step", "epoch") or value in ("", None):
                        continue
                    steps, values = series.setdefault(key, ([], []))
                    steps.append(step)
                    values.append(float(value))
    return {k: (np.array(s), np.array(v)) for k, (s, v) in series.items()}


def training_curves(runs: Mapping[str, Sequence[Path]], path: Path, keys: Sequence[str]) -> Path:
    """Loss curves of several Lightning runs (name → its ``metrics.csv`` files): one panel per
    run, ``keys`` (e.g. ``train/loss``, ``val/loss``) against the optimiser step."""
    fig, axes = new_figure(len(runs), 1, size=4.5)
    for ax, (name, csv_paths) in zip(axes.flat, runs.items(), strict=True):
        metrics = read_lightning_metrics(csv_paths)
        for key in keys:
            if key in metrics:
                steps, values = metrics[key]
                ax.plot(steps, values, label=key, marker="o" if key.startswith("val") else None)
        ax.set_title(name, fontsize=13, pad=22)  # above the experiment label
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize=10)
    return save_figure(fig, path)


def probe_curves(runs: Mapping[str, Sequence[Path]], path: Path) -> Path:
    """Online-probe accuracy (``probe/acc``) of pre-training runs (name → ``metrics.csv``
    files) against the step, each beside its random-init twin (``probe/acc_random``, dashed)."""
    fig, axes = new_figure(1, 1, size=6.0)
    ax = axes[0, 0]
    for (name, csv_paths), color in zip(
        runs.items(), plt.rcParams["axes.prop_cycle"], strict=False
    ):
        metrics = read_lightning_metrics(csv_paths)
        if "probe/acc" not in metrics:
            continue
        steps, acc = metrics["probe/acc"]
        ax.plot(steps, acc, marker="o", label=name, **color)
        if "probe/acc_random" in metrics:
            ax.axhline(metrics["probe/acc_random"][1][-1], linestyle="--", **color)
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("linear-probe accuracy (dashed: random init)")
    ax.legend(fontsize=11)
    return save_figure(fig, path)


def roc_curves(
    scores: Mapping[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str],
    path: Path,
    background: int = 0,
) -> Path:
    """Background rejection vs signal efficiency of each class against ``background`` (QCD).

    ``scores`` maps a curve set (e.g. a domain) to (probabilities [N, C], labels [N] in 0..C-1);
    the discriminant of class ``s`` is ``p_s / (p_s + p_background)`` (JetClass convention).
    """
    signals = [c for c in range(len(class_names)) if c != background]
    fig, axes = new_figure(1, 1, size=6.0)
    ax = axes[0, 0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (name, (probs, labels)), style in zip(scores.items(), LINE_STYLES, strict=False):
        for colour, s in zip(colours * 3, signals, strict=False):
            keep = (labels == s) | (labels == background)
            if not (labels[keep] == s).any() or not (labels[keep] == background).any():
                continue
            p = probs[keep]
            fpr, tpr, _ = roc_curve(labels[keep] == s, versus_background_score(p, s, background))
            ok = fpr > 0
            ax.plot(
                tpr[ok], 1 / fpr[ok], linestyle=style, color=colour,
                label=f"{class_names[s]} vs {class_names[background]} ({name})",
            )  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency")
    ax.set_ylabel("background rejection")
    ax.legend(fontsize=9, ncol=2)
    return save_figure(fig, path)


def score_distributions(
    scores: Mapping[str, np.ndarray], class_names: Sequence[str], path: Path, bins: int = 25
) -> Path:
    """Distribution of each class's score, one panel per class, one curve per sample.

    ``scores`` maps a sample (e.g. ``sim``, ``data``) to probabilities [N, C].
    """
    n = len(class_names)
    ncols = min(3, n)
    fig, axes = new_figure(ncols, math.ceil(n / ncols), size=4.0)
    for c, name in enumerate(class_names):
        ax = axes.flat[c]
        for (label, probs), style in zip(scores.items(), LINE_STYLES * 4, strict=False):
            h = hist.Hist(hist.axis.Regular(bins, 0, 1, name="score"))
            h.fill(probs[:, c])
            mplhep.histplot(h, ax=ax, density=True, yerr=False, label=label, linestyle=style)
        ax.set_xlabel(f"score {name}", fontsize=12)
        ax.set_yscale("log")
        ax.legend(fontsize=10)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return save_figure(fig, path)


def mean_std_curves(
    x: Sequence[float],
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: Path,
    xlabel: str,
    ylabel: str,
    log_x: bool = True,
) -> Path:
    """Each arm's value ± its uncertainty (a std over seeds, or a statistical error) against
    ``x`` (e.g. labelled jets).

    ``curves`` maps an arm (``scratch``, ``frozen``, ...) to (means, stds), one per ``x``; NaN
    where the arm has no point (it is drawn through the points it has).
    """
    fig, axes = new_figure(1, 1, size=6.0)
    ax = axes[0, 0]
    # Colours repeat after the style's cycle: a marker and the next line style keep the arms
    # apart.
    colours = len(plt.rcParams["axes.prop_cycle"].by_key().get("color", [])) or 1
    for i, (name, (means, stds)) in enumerate(curves.items()):
        means, stds = np.asarray(means, dtype=float), np.asarray(stds, dtype=float)
        has = np.isfinite(means)
        style = {
            "marker": CURVE_MARKERS[i % len(CURVE_MARKERS)],
            "linestyle": LINE_STYLES[i // colours % len(LINE_STYLES)],
        }
        ax.errorbar(np.asarray(x)[has], means[has], yerr=stds[has], capsize=4, label=name, **style)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # no crowded minor labels
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if curves:  # a report of a study with no completed run yet has none
        ax.legend(fontsize=12 if len(curves) > 3 else None)
    return save_figure(fig, path)
