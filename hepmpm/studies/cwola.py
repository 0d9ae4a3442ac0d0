"""``hepmpm study cwola``: weak supervision, Classification Without Labels (Metodiev et al. 2017).

Mixed sample A holds QCD jets only; mixed sample B holds other QCD jets plus ``n_signal``
injected signal jets. A tagger is trained to tell A from B, its labels being the *mixture
membership*, never the truth. Since the optimal A-vs-B classifier is a monotonic function of
the signal-vs-QCD likelihood ratio, it tags signal once the injection is large enough. It is
scored on the truth-labelled test split: signal efficiency at fixed background efficiencies,
significance improvement ``eps_S / sqrt(eps_B)``, and AUC, against ``n_signal``, with a
pre-trained backbone (pre-trained without labels on all the jets) vs from scratch.

The mixtures are skim folders of relabelled shards (:func:`write_relabelled_skim`): A jets get
the QCD label and B jets the signal's, so the ordinary fine-tuning trains on them unchanged.
Every split is mixed the same way (the jet hash keeps each jet's split), so fine-tuning validates
on mixtures too; the truth evaluation uses the test split, which no training step sees.

``preset: data`` draws the mixtures from pseudo-data (weak supervision on data: its truth only
scores); the study's own pre-training then is on data (all the mixtures' jets, no labels).
``pretrained`` adds arms fine-tuned from other backbones (``pretrained:NAME``, e.g. the shipped
sim backbone, or a pre-training folder such as a larger data corpus's) on the same mixtures.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from sklearn.metrics import roc_auc_score, roc_curve

from hepmpm.atomic import write_json_atomic
from hepmpm.data.index import JetIndex
from hepmpm.data.manifest import MANIFEST_NAME, load_manifest
from hepmpm.data.shards import JET_COLUMNS, JetRows, particle_features, write_shard
from hepmpm.data.split import SPLITS
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.pages import Section, write_page
from hepmpm.evaluation.plots import mean_std_curves
from hepmpm.jetclass import CLASS_INDEX
from hepmpm.pipeline import Pipeline
from hepmpm.pretrained import resolve_backbone
from hepmpm.studies.common import (
    SampleConfig,
    StudyConfig,
    StudyFolder,
    aggregate,
    aggregated_section,
    comparison_lines,
    curves,
    sample_paths,
    write_table,
)


class CwolaConfig(StudyConfig):
    """configs/studies/cwola.yaml."""

    signal: str = Field("Tbqq", description="class injected into mixture B")
    background_jets: int = Field(ge=20, description="generated QCD jets (split into A and B)")
    signal_jets: int = Field(ge=10, description="generated signal jets (the pool to inject)")
    sample_seed: int = Field(1, ge=0)
    n_signal: list[int] = Field(min_length=1, description="signal jets injected into B (train)")
    background_efficiencies: list[float] = Field(default_factory=lambda: [0.1, 0.01])
    modes: list[str] = Field(default_factory=lambda: ["scratch", "finetune"])
    preset: Literal["sim", "data", "shift2"] = Field(
        "sim", description="generator preset of the mixtures' jets (data: weak supervision on "
        "pseudo-data, whose truth only scores)",
    )  # fmt: skip
    pretrained: dict[str, str] = Field(
        default_factory=dict,
        description="arm name -> backbone it fine-tunes from (pretrained:NAME or a pre-training "
        "folder), beside the modes on the study's own pre-training",
    )

    def model_post_init(self, _context: object) -> None:
        if self.signal not in CLASS_INDEX or self.signal == "QCD":
            raise ValueError(f"signal must be a JetClass class other than QCD, got {self.signal}")
        if not all(0 < e < 1 for e in self.background_efficiencies):
            raise ValueError("background_efficiencies must lie in (0, 1)")
        taken = {"scratch", *(f"pre-trained ({m})" for m in self.modes)} & set(self.pretrained)
        if taken:
            raise ValueError(f"pretrained: arm name(s) {sorted(taken)} are the modes' arms")


def write_relabelled_skim(
    source: Path, out: Path, positions: np.ndarray, labels: np.ndarray, note: dict[str, Any]
) -> Path:
    """A skim folder ``out`` holding the jets at ``positions`` of the skim ``source`` (its
    :class:`JetIndex` order) with their ``label`` replaced by ``labels`` [n]; one shard, the
    source's manifest otherwise (feature set, statistics), ``note`` recorded as ``derived``.
    Kept when its manifest exists (the manifest is written last)."""
    out = Path(out)
    if (out / MANIFEST_NAME).is_file():
        return out
    shutil.rmtree(out, ignore_errors=True)
    manifest = load_manifest(source)
    table = pa.concat_tables([pq.read_table(s.path) for s in manifest.shards])
    order = np.argsort(positions, kind="stable")
    table = table.take(pa.array(np.asarray(positions)[order]))
    columns = {name: table[name].to_numpy() for name in JET_COLUMNS}
    columns["label"] = np.asarray(labels, dtype=np.int32)[order]
    features, offsets = particle_features(table["particles"])
    rows = JetRows(columns=columns, features=features, counts=np.diff(offsets))
    shard = "shards/mixture.parquet"
    write_shard(out / shard, rows)
    raw = dict(manifest.raw)
    raw["shards"] = [
        {
            "path": shard,
            "dataset": "mixture",
            "domain": str(columns["domain"][0]),
            "jets": len(rows),
        }
    ]
    raw["derived"] = {"from": str(source), **note}
    write_json_atomic(out / MANIFEST_NAME, raw)
    return out


def mixture_positions(
    index: JetIndex, signal: int, n_signal: int, seed: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Jets of mixture A (QCD, label 0) and B (QCD + signal, label ``signal``): positions in
    ``index`` [n], their mixture labels [n], and the counts. In every split the QCD jets are
    halved at random (``seed``) between A and B; ``n_signal`` signal jets of the train split,
    and proportionally many of the val and test splits, join B."""
    rng = np.random.default_rng(seed)
    positions, labels = [], []
    counts: dict[str, Any] = {"n_signal_train": n_signal}
    for code, split in enumerate(SPLITS):
        n = round(n_signal * index.fractions[code] / index.fractions[0])
        in_split = index.split_code == code
        qcd = rng.permutation(np.flatnonzero(in_split & (index.labels == CLASS_INDEX["QCD"])))
        pool = np.flatnonzero(in_split & (index.labels == signal))
        if n > len(pool):
            raise HepmpmError(
                f"n_signal {n_signal} needs {n} signal jets in split {split!r}, the sample "
                f"holds {len(pool)}; raise signal_jets or lower n_signal"
            )
        half = len(qcd) // 2
        positions += [qcd, rng.choice(pool, n, replace=False)]
        labels += [np.zeros(half, np.int32), np.full(len(qcd) - half + n, signal, np.int32)]
        counts[f"{split}_a_jets"] = half
        counts[f"{split}_b_jets"] = len(qcd) - half + n
    counts["b_train_signal_fraction"] = n_signal / max(1, counts["train_b_jets"])
    return np.concatenate(positions), np.concatenate(labels), counts


def signal_efficiency(signal: np.ndarray, background: np.ndarray, eps_b: float) -> float:
    """Signal efficiency of the tightest-enough cut whose background efficiency is at most
    ``eps_b`` (scores [S] and [B], higher is more signal-like)."""
    truth = np.concatenate([np.ones(len(signal)), np.zeros(len(background))])
    fpr, tpr, _ = roc_curve(truth, np.concatenate([signal, background]), drop_intermediate=False)
    return float(tpr[np.searchsorted(fpr, eps_b, side="right") - 1])


def score_truth(
    run_dir: Path, index: JetIndex, signal: int, efficiencies: Sequence[float]
) -> dict[str, float]:
    """AUC, signal efficiency and significance improvement of the A-vs-B tagger in ``run_dir``
    on the truth-labelled test split of ``index``."""
    from hepmpm.data.loader import JetDataset
    from hepmpm.evaluation.scoring import predict
    from hepmpm.models.store import load_tagger

    tagger, _ = load_tagger(run_dir)
    labels = [CLASS_INDEX["QCD"], signal]
    probs, truth = predict(tagger, JetDataset(index, "test", 256, labels=labels, bucket=True))
    score = probs[:, 1]  # p(B): outputs follow JetClass order, QCD first
    is_signal = truth == signal
    row = {"auc": float(roc_auc_score(is_signal, score))}
    for eps_b in efficiencies:
        eps_s = signal_efficiency(score[is_signal], score[~is_signal], eps_b)
        row[f"eps_s_at_{eps_b:g}"] = eps_s
        row[f"si_at_{eps_b:g}"] = eps_s / np.sqrt(eps_b)
    return row


def run(config: CwolaConfig, out: Path, pipeline: Pipeline) -> Path:
    """Run (or complete) the study; returns ``summary.md``. Its fine-tunings run together
    (on Dask when the ``pipeline`` is distributed), then each tagger is scored on the truth."""
    folder = StudyFolder(out, config, "cwola", pipeline)
    files = []
    for name, jets in (("QCD", config.background_jets), (config.signal, config.signal_jets)):
        spec = SampleConfig(
            preset=config.preset, classes=[name], jets_per_class=jets, seed=config.sample_seed
        )
        files += sample_paths(folder.sample(spec))
    truth_skim = folder.skim("truth", files, config.preset)
    backbone = folder.pretrain("all-jets", truth_skim)
    pipeline.echo(f"pre-trained on all jets, no labels: {backbone}")
    others = {name: resolve_backbone(source) for name, source in config.pretrained.items()}
    index = JetIndex.from_skim(truth_skim)
    signal = CLASS_INDEX[config.signal]
    classes = ["QCD", config.signal]
    planned = []  # (row's keys, signal fraction in B, run)
    for seed in config.seeds:
        for n in config.n_signal:
            positions, labels, counts = mixture_positions(index, signal, n, seed)
            mixture = write_relabelled_skim(
                truth_skim, folder.work / "skims" / f"mixture-n{n}-seed{seed}", positions,
                labels, {"study": "cwola", "seed": seed, **counts},
            )  # fmt: skip
            arms = [(m, m, backbone) for m in config.modes]
            arms += [(name, "finetune", path) for name, path in others.items()]
            for name, mode, start in arms:
                arm = name if name in others else (
                    "scratch" if mode == "scratch" else f"pre-trained ({mode})"
                )  # fmt: skip
                keys = {"arm": arm, "n_signal": n, "seed": seed}
                run = folder.run(f"{name}/n{n}/seed{seed}", mixture, start, mode, None, classes,
                                 seed)  # fmt: skip
                planned.append((keys, counts["b_train_signal_fraction"], run))
    folder.finetune([run for _, _, run in planned])
    rows = []
    for keys, fraction, run in planned:
        row = {**keys, "signal_fraction_b": fraction}
        row |= score_truth(run.out, index, signal, config.background_efficiencies)
        pipeline.echo(
            f"  {row['arm']:22s} n_signal={row['n_signal']:<5d} seed {row['seed']}: "
            f"truth AUC {row['auc']:.3f}"
        )
        rows.append(row)
    return _report(config, folder.root, rows)


def _report(config: CwolaConfig, out: Path, rows: list[dict]) -> Path:
    effs = [f"{e:g}" for e in config.background_efficiencies]
    values = ("auc", *(f"eps_s_at_{e}" for e in effs), *(f"si_at_{e}" for e in effs))
    write_table(out / "results", rows)
    summary = aggregate(rows, ("arm", "n_signal"), ("signal_fraction_b", *values))
    write_table(out / "aggregated", summary)
    figures = []
    plots = [("auc", "truth AUC (signal vs QCD)")]
    plots += [(f"eps_s_at_{e}", rf"$\epsilon_S$ at $\epsilon_B$ = {e}") for e in effs]
    plots += [
        (f"si_at_{effs[0]}", rf"$\epsilon_S/\sqrt{{\epsilon_B}}$ at $\epsilon_B$ = {effs[0]}")
    ]
    for value, label in plots:
        x, ys = curves(summary, "arm", "n_signal", value)
        path = out / f"{value.replace('.', 'p')}_vs_n_signal.png"
        figures.append(
            mean_std_curves(x, ys, path, "injected signal jets in B", label, log_x=False)
        )
    findings = comparison_lines(
        summary, "n_signal", "arm", "auc", "scratch", lambda n: f"n_signal={n}"
    )
    intro = [
        f"Jets of the {config.preset} preset. "
        f"Mixture A: QCD; mixture B: QCD + n_signal {config.signal} jets (train split; val and "
        f"test splits get proportionally many). {config.background_jets} QCD and "
        f"{config.signal_jets} {config.signal} jets generated; the classifier sees only A-vs-B "
        "labels and is scored on the truth of the test split. Significance improvement = "
        f"eps_S / sqrt(eps_B). Mean ± std over {len(config.seeds)} seeds (mixture draw and "
        "initialisation). A random classifier gives AUC 0.5 and eps_S = eps_B.",
    ]
    sections = [
        Section("Setup", text=intro),
        aggregated_section(
            "Results (truth-labelled test split)",
            summary,
            ("arm", "n_signal"),
            ("signal_fraction_b", *values),
            findings,
            figures,
        ),
    ]
    markdown, _ = write_page(out, "summary", "CWoLa: weak supervision from mixtures", sections)
    return markdown
