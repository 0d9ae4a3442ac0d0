"""`hepmpm study NAME --tiny`: every study end to end on one shared tiny sample (real Pythia,
coffea skims, Lightning pre-training and fine-tuning), its tables, plots and summary; the
CWoLa mixtures; the aggregation; caching on re-run; clear errors for bad input."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from hepmpm.cli import main
from hepmpm.data.index import JetIndex
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.evaluation.metrics import mean_rejection
from hepmpm.evaluation.plots import mean_std_curves
from hepmpm.jetclass import CLASS_INDEX
from hepmpm.studies.common import aggregate, curves, paired_rows, pm, write_table
from hepmpm.studies.cwola import mixture_positions, signal_efficiency, write_relabelled_skim
from hepmpm.studies.label_efficiency import efficiency_rows, labels_to_match
from hepmpm.studies.runner import STUDIES, run_study

SEEDS = 3
#: Packaged configs of a study beside its own: (study name, config name).
PACKAGED_VARIANTS = (
    ("label-efficiency", "label_efficiency_new_classes"),
    ("label-efficiency", "label_efficiency_sim_to_real"),
)


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    """Every study in --tiny mode, the generated samples shared between them."""
    root = tmp_path_factory.mktemp("studies")
    share = [f"samples_dir={root / 'samples'}"]
    outs = {}
    for name in STUDIES:
        outs[name] = root / name
        if name == "cwola":  # one through the command line
            args = ["study", name, "--tiny", "--out", str(outs[name]), "--no-progress"]
            assert main([*args, "--set", share[0]]) == 0
        else:
            run_study(name, outs[name], overrides=share, tiny=True, show_progress=False)
    for name, config in PACKAGED_VARIANTS:  # label-efficiency's other regimes
        outs[config] = root / config
        run_study(name, outs[config], config, share, tiny=True, show_progress=False)
    return outs


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _check_outputs(out: Path, points: int, arms: int, plots: list[str]) -> list[dict]:
    for name in ("results.csv", "results.json", "aggregated.csv", "aggregated.json"):
        assert (out / name).is_file(), name
    for plot in plots:
        png = out / plot
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    rows = _rows(out / "results.csv")
    assert len(rows) == points * arms * SEEDS
    assert json.loads((out / "results.json").read_text())[0].keys() == rows[0].keys()
    aggregated = _rows(out / "aggregated.csv")
    assert len(aggregated) == points * arms
    assert all(int(a["seeds"]) == SEEDS for a in aggregated)
    summary = (out / "summary.md").read_text()
    assert "±" in summary and f"over {SEEDS} seeds" in summary
    for plot in plots:
        assert f"]({plot})" in summary
    html = (out / "summary.html").read_text()
    assert html.count("data:image/png;base64,") == len(plots)
    return rows


def _in(rows: list[dict], key: str, low: float, high: float) -> None:
    values = [float(r[key]) for r in rows]
    assert all(low <= v <= high for v in values), (key, values)


def test_cwola(studies):
    out = studies["cwola"]
    plots = [
        "auc_vs_n_signal.png", "eps_s_at_0p2_vs_n_signal.png",
        "eps_s_at_0p05_vs_n_signal.png", "si_at_0p2_vs_n_signal.png",
    ]  # fmt: skip
    rows = _check_outputs(out, 2, 2, plots)
    _in(rows, "auc", 0, 1)
    _in(rows, "eps_s_at_0.2", 0, 1)
    _in(rows, "si_at_0.05", 0, 1 / math.sqrt(0.05))
    assert {r["n_signal"] for r in rows} == {"0", "24"}
    # The mixtures: no signal in B at n_signal=0, the injected count at 24.
    index = JetIndex.from_skim(out / "work" / "skims" / "mixture-n24-seed0")
    manifest = json.loads((out / "work/skims/mixture-n24-seed0/manifest.json").read_text())
    assert manifest["derived"]["n_signal_train"] == 24
    assert set(np.unique(index.labels).tolist()) == {0, CLASS_INDEX["Tbqq"]}
    # A later request into the shared sample (the new-classes corpus: QCD, Hbb) kept its tops.
    record = json.loads((out.parent / "samples/sim-j60-s1/generation.json").read_text())
    assert {f["class"] for f in record["files"].values()} == {"QCD", "Hbb", "Tbqq"}


def test_label_efficiency(studies):
    out = studies["label-efficiency"]
    for name in ("results", "aggregated", "label_efficiency", "paired", "ablation", "probe"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.json").is_file(), name
    for plot in ("accuracy_vs_labels.png", "mean_rejection_50_vs_labels.png", "probe.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    rows = _rows(out / "results.csv")
    # scratch and finetune at both points, the lever arm only at its own.
    assert sorted((r["arm"], r["labels"]) for r in rows) == sorted(
        [(a, n) for a in ("scratch", "finetune") for n in ("12", "24")]
        + [("finetune-rank", "12"), ("frozen-random", "12")]
    )
    _in(rows, "accuracy", 0, 1)
    assert all(int(r["best_step"]) >= 1 for r in rows)
    ablation = {r["arm"]: r for r in _rows(out / "ablation.csv")}
    assert ablation["finetune-rank"]["lever"] == "mpm.mask_position=rank"
    assert ablation["frozen-random"]["lever"] == "random init, not pre-trained"
    random = json.loads((out / "work" / "pretrain" / "random" / "backbone.json").read_text())
    assert (random["init"], random["steps"]) == ("random", 0)
    assert float(ablation["scratch"]["minus_scratch"]) == 0
    efficiency = _rows(out / "label_efficiency.csv")
    # Every arm but scratch, at each point it ran (the lever arms at their own only).
    assert sorted((r["arm"], str(r["labels"])) for r in efficiency) == sorted(
        [("finetune", "12"), ("finetune", "24"), ("finetune-rank", "12"), ("frozen-random", "12")]
    )
    probes = {r["pretraining"]: r for r in _rows(out / "probe.csv")}
    assert set(probes) == {"pretrain", "rank"}
    assert all(0 <= float(p["probe_acc_random"]) <= 1 for p in probes.values())
    # The pre-training never saw the labelled sample: no jet (pT, mass) in common.
    corpus, labelled = (
        JetIndex.from_skim(out / "work" / "skims" / name) for name in ("corpus", "labelled")
    )

    def jets(index):
        pt, mass = index.columns["jet_pt"].tolist(), index.columns["jet_mass"].tolist()
        return set(zip(pt, mass, strict=True))

    assert not jets(corpus) & jets(labelled)


def test_label_efficiency_on_new_classes(studies):
    """A corpus without the tagger's classes but Hbb (new classes), and the joint variant: the
    corpus's own labels as a class target during pre-training."""
    out = studies["label_efficiency_new_classes"]
    rows = _rows(out / "results.csv")
    assert {r["arm"] for r in rows} == {"scratch", "finetune", "finetune-joint"}
    assert "(new to the pre-training: Wqq, Tbqq)" in (out / "summary.md").read_text()
    joint = out / "work" / "pretrain" / "joint"
    logged = _rows(next(joint.glob("logs/version_*/metrics.csv")))
    accuracy = [float(r["val/acc_class"]) for r in logged if r.get("val/acc_class")]
    assert accuracy and all(0 <= a <= 1 for a in accuracy)  # the class head trained and scored
    plain = _rows(next((out / "work" / "pretrain" / "pretrain").glob("logs/version_*/metrics.csv")))
    assert not any(r.get("val/acc_class") for r in plain)


def test_label_efficiency_tested_on_another_domain(studies):
    """The sim-to-real regime: pre-trained on `data`, fine-tuned on `sim`, every arm also tested
    on every jet of a separate `data` sample; one arm from the shipped sim backbone."""
    out = studies["label_efficiency_sim_to_real"]
    rows = _rows(out / "results.csv")
    assert sorted((r["arm"], r["labels"]) for r in rows) == sorted(
        [(a, n) for a in ("scratch", "finetune") for n in ("12", "24")]
        + [("finetune-sim", "12"), ("finetune-joint-sim", "12")]
    )
    _in(rows, "accuracy_data", 0, 1)
    _in(rows, "mean_rejection_50_data", 1, 1e9)
    assert (out / "accuracy_data_vs_labels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = out / "work" / "runs" / "finetune-sim" / "n12" / "seed0"
    tested = json.loads((run / "test_data.json").read_text())
    data_jets = JetIndex.from_skim(out / "work" / "skims" / "test-data")
    assert sum(map(sum, tested["confusion_matrix"])) == len(data_jets.labels)  # every jet
    assert json.loads((run / "tagger.json").read_text())["pretrained"].endswith("compact-sim4")
    # Joint: pre-trained on data and sim together, the class target on the sim labels only.
    both = JetIndex.from_skim(out / "work" / "skims" / "corpus+labelled")
    assert set(both.domains) == {"data", "sim"}
    joint = json.loads((out / "work" / "pretrain" / "joint-sim" / "run.json").read_text())
    assert joint["mpm"]["class_domains"] == ["sim"] and "class" in joint["mpm"]["targets"]


def test_label_efficiency_factor_with_arms_at_other_label_counts(tmp_path):
    """The reference runs further than the arm (here to 1000 labels, the arm to 100): the arm
    keeps its rows and its curve, the reference's extra point sets the match."""
    rows = [{"arm": "scratch", "labels": 10, "seed": 0, "accuracy": 0.5},
            {"arm": "scratch", "labels": 100, "seed": 0, "accuracy": 0.6},
            {"arm": "scratch", "labels": 1000, "seed": 0, "accuracy": 0.8},
            {"arm": "finetune", "labels": 10, "seed": 0, "accuracy": 0.6},
            {"arm": "finetune", "labels": 100, "seed": 0, "accuracy": 0.7}]  # fmt: skip
    summary = aggregate(rows, ("arm", "labels"), ("accuracy",))
    out = efficiency_rows(summary, "scratch")
    assert [(r["labels"], r["factor"]) for r in out] == [(10, "10.00"), (100, "3.16")]
    # Against the best of two from-scratch arms (here a stronger one from 100 labels on): each
    # N reads the envelope, so the factor there can only shrink; the reference's stays.
    rows += [{"arm": "scratch-b", "labels": 100, "seed": 0, "accuracy": 0.7},
             {"arm": "scratch-b", "labels": 1000, "seed": 0, "accuracy": 0.75}]  # fmt: skip
    summary = aggregate(rows, ("arm", "labels"), ("accuracy",))
    out = efficiency_rows(summary, "scratch", envelope=["scratch-b"])
    assert [r["arm"] for r in out] == ["finetune", "finetune"]
    assert [(r["factor"], r["best_scratch_factor"]) for r in out] == [
        ("10.00", "3.16"), ("3.16", "1.00")]  # fmt: skip
    plot = mean_std_curves(*curves(summary, "arm", "labels", "accuracy"), tmp_path / "a.png",
                           "labels", "accuracy")  # fmt: skip
    assert plot.is_file()


def _tiny_label_efficiency(studies, tmp_path, tiny: str, overrides=()) -> Path:
    """label_efficiency.yaml with the ``tiny:`` section ``tiny`` (YAML), run in ``--tiny`` mode
    on the shared samples into ``tmp_path/study``; its folder."""
    config = tmp_path / "study.yaml"
    config.write_text(f"inherit: label_efficiency.yaml\ntiny:\n{tiny}")
    out = tmp_path / "study"
    share = f"samples_dir={studies['label-efficiency'].parent / 'samples'}"
    run_study("label-efficiency", out, config, [share, *overrides], tiny=True,
              show_progress=False)  # fmt: skip
    return out


def test_label_efficiency_without_pre_training_makes_no_corpus(studies, tmp_path):
    """Arms that pre-train nothing (here scratch alone; likewise shipped backbones) leave the
    corpus alone: neither generated nor skimmed."""
    tiny = "  {labels: [12], arms: [{name: scratch, mode: scratch}]}\n"
    out = _tiny_label_efficiency(studies, tmp_path, tiny)
    assert [r["arm"] for r in _rows(out / "results.csv")] == ["scratch"]
    assert sorted(p.name for p in (out / "work" / "skims").iterdir()) == ["labelled"]


def test_a_study_folder_is_extended_by_further_seeds_not_changed(studies, tmp_path):
    """A later sitting may add seeds (the finished runs are kept, the record takes the new
    config); changing what a finished run computed (an arm's rates, the first seed) is refused,
    naming the key."""
    tiny = "  {labels: [12], arms: [{name: scratch, mode: scratch, lrs: [1.0e-3, 3.0e-3]}]}\n"
    out = _tiny_label_efficiency(studies, tmp_path, tiny)
    first = out / "work" / "runs" / "scratch" / "lr0.001" / "n12" / "seed0" / "metrics.json"
    finished = first.stat().st_mtime_ns
    _tiny_label_efficiency(studies, tmp_path, tiny, ["seeds=[0, 1]"])
    assert sorted(r["seed"] for r in _rows(out / "results.csv")) == ["0", "1"]
    assert first.stat().st_mtime_ns == finished
    assert json.loads((out / "study.json").read_text())["settings"]["seeds"] == [0, 1]
    one_rate = "arms=[{name: scratch, mode: scratch, lrs: [1.0e-3]}]"
    for change, key in (("seeds=[1, 0]", "seeds"), (one_rate, "arms")):
        with pytest.raises(HepmpmError, match=f"made with other settings \\({key} differs\\)"):
            _tiny_label_efficiency(studies, tmp_path, tiny, [change])


def test_a_variant_keeps_how_it_was_pre_trained_when_a_study_folder_is_extended():
    """A folder made before ``continue_from`` existed takes a config with new variants that
    continue a backbone or pre-train on the labelled jets; a variant it already has may not
    change how it is pre-trained, nor may a finished variant's starting point."""
    from hepmpm.studies.common import extension_conflict

    before = {"seeds": [0], "variants": {"a": []}}
    after = {"seeds": [0], "variants": {"a": [], "b": []}}
    for key, new, old in (
        ("continue_from", {"b": "pretrained:compact-sim4"}, {"a": "pretrained:compact-sim4"}),
        ("pretrain_on_labelled_jets", ["b"], ["a"]),
    ):
        assert extension_conflict(before, {**after, key: type(new)()}) is None
        assert extension_conflict(before, {**after, key: new}) is None
        assert extension_conflict(before, {**after, key: old}) == key
    changed = {"continue_from": {"b": "pretrained:compact-sim4-stdin"}}
    assert extension_conflict({"continue_from": {"b": "x"}}, changed) == "continue_from"


def test_tokenizer_fitted_once_for_the_pre_trainings_that_need_tokens(studies, tmp_path):
    """A study with a tokenizer: stage fits it once, for the k-means variants only; the main
    recipe (regression + id) pre-trains without it."""
    tiny = (
        "  labels: [12]\n"
        "  tokenizer: {config: tiny_kmeans}\n"
        "  variants:\n"
        "    kmeans: ['mpm.targets={kmeans: 1.0}']\n"
        "    kmeans-id: ['mpm.targets={kmeans: 1.0, id: 1.0}']\n"
        "  reference: finetune\n"
        "  arms: [{name: finetune, mode: finetune, pretraining: pretrain},\n"
        "         {name: finetune-kmeans, mode: finetune, pretraining: kmeans},\n"
        "         {name: finetune-kmeans-id, mode: finetune, pretraining: kmeans-id}]\n"
    )
    work = _tiny_label_efficiency(studies, tmp_path, tiny) / "work"
    assert [p.name for p in work.joinpath("tokenizer").iterdir() if p.suffix == ".json"]
    runs = {n: json.loads((work / "pretrain" / n / "run.json").read_text())
            for n in ("pretrain", "kmeans", "kmeans-id")}  # fmt: skip
    assert runs["pretrain"]["tokenizer"] is None
    assert runs["kmeans"]["tokenizer"] == runs["kmeans-id"]["tokenizer"] is not None
    assert runs["kmeans"]["tokenizer"]["kind"] == "kmeans"


def test_paired_differences_by_seed():
    """Each arm minus the reference on the same seed (the same labelled jets): a gain in every
    seed that the draws' spread would hide is resolved; a mixed one is not; unpaired seeds and
    the reference itself are left out."""
    scratch = [0.60, 0.70, 0.80, 0.65]
    rows = [
        {"arm": "scratch", "labels": 100, "seed": s, "accuracy": a} for s, a in enumerate(scratch)
    ]
    rows += [
        {"arm": "finetune", "labels": 100, "seed": s, "accuracy": a + 0.02 + 0.002 * s}
        for s, a in enumerate(scratch[:3])
    ]
    rows += [
        {"arm": "mixed", "labels": 100, "seed": s, "accuracy": a + d}
        for s, (a, d) in enumerate(zip(scratch, (0.05, -0.04, 0.01, -0.03), strict=True))
    ]
    rows += [{"arm": "once", "labels": 100, "seed": 0, "accuracy": 0.9}]
    out = {r["arm"]: r for r in paired_rows(rows, "scratch")}
    assert set(out) == {"finetune", "mixed", "once"}
    gain = out["finetune"]
    assert gain["seeds"] == 3 and gain["seeds_above"] == "3/3" and gain["verdict"] == "above"
    assert gain["minus_scratch_mean"] == pytest.approx(0.022)
    assert gain["minus_scratch_std"] == pytest.approx(0.002)
    # t(0.975, 2 dof) = 4.303: the interval is mean +- 4.303 * std / sqrt(3)
    assert gain["ci95_low"] == pytest.approx(0.022 - 4.303 * 0.002 / math.sqrt(3), abs=1e-5)
    assert out["mixed"]["verdict"] == "within the spread" and out["mixed"]["seeds_above"] == "2/4"
    assert out["once"]["verdict"] == "one seed"


def test_labels_to_match_interpolates_in_log_labels():
    points, reference = [100, 1000], [0.5, 0.7]
    assert labels_to_match(points, reference, 0.6) == pytest.approx(math.sqrt(100 * 1000))
    assert labels_to_match(points, reference, 0.4) == 100
    assert labels_to_match(points, reference, 0.8) is None


def test_rerun_is_cached_and_other_config_refused(studies, capsys):
    out = studies["cwola"]
    before = (out / "results.csv").read_text()
    share = f"samples_dir={out.parent / 'samples'}"
    lines = []
    run_study("cwola", out, overrides=[share], tiny=True, echo=lines.append,
              show_progress=False)  # fmt: skip
    assert (out / "results.csv").read_text() == before
    with pytest.raises(HepmpmError, match="made with other settings"):
        run_study("cwola", out, overrides=[share, "seeds=[5, 6, 7]"], tiny=True)
    args = ["study", "cwola", "--tiny", "--out", str(out), "--set", "seeds=[5, 6, 7]"]
    assert main(args) == 2
    assert "choose another --out" in capsys.readouterr().err


def test_bad_input(tmp_path, capsys):
    with pytest.raises(HepmpmError, match=r"unknown study 'label_efficiency'.*label-efficiency"):
        run_study("label_efficiency", tmp_path / "x")
    with pytest.raises(SystemExit) as exit_:  # argparse names the studies and the tools
        main(["study", "no-such", "--out", str(tmp_path / "y")])
    assert exit_.value.code == 2
    assert "invalid choice: 'no-such'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown key 'label'"):
        run_study("cwola", tmp_path / "z", overrides=["label=[10]"], tiny=True)
    with pytest.raises(ConfigError, match=r"unknown key 'corpus\.jets'"):
        run_study("label-efficiency", tmp_path / "z", overrides=["corpus.jets=3"])
    with pytest.raises(ConfigError, match="signal"):
        run_study("cwola", tmp_path / "z", overrides=["signal=QCD"], tiny=True)
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherit: nothing.yaml\n")
    assert main(["study", "cwola", "--config", str(bad), "--out", str(tmp_path / "w")]) == 2
    assert "nothing.yaml" in capsys.readouterr().err
    # A check across keys names the arm in one line, without echoing the whole config.
    one_point = ["labels=[100]", "ablation_labels=100", "lr_selection_labels=100"]
    with pytest.raises(ConfigError, match=r"yaml: arm '[\w-]+': its labels must be among \[100\]$"):
        run_study("label-efficiency", tmp_path / "u", overrides=one_point)
    no_tiny = tmp_path / "no_tiny.yaml"
    no_tiny.write_text("seeds: [0]\n")
    with pytest.raises(HepmpmError, match="no 'tiny:' section"):
        run_study("cwola", tmp_path / "v", config_path=no_tiny, tiny=True)
    assert not any((tmp_path / name).exists() for name in "zvu")


def test_cwola_mixtures_and_efficiency(skim_dir, tmp_path):
    index = JetIndex.from_skim(skim_dir)
    top = CLASS_INDEX["Tbqq"]
    positions, labels, counts = mixture_positions(index, top, 8, seed=3)
    truth = index.labels[positions]
    assert len(set(positions.tolist())) == len(positions)
    assert set(truth.tolist()) <= {0, top}
    # A (label 0) is pure QCD; B holds exactly the injected signal of the train split.
    assert (truth[labels == 0] == 0).all()
    train = index.split_code[positions] == 0
    assert ((truth == top) & train).sum() == 8 == counts["n_signal_train"]
    assert counts["train_a_jets"] == (train & (labels == 0)).sum()
    again, _, _ = mixture_positions(index, top, 8, seed=3)
    assert (again == positions).all()
    with pytest.raises(HepmpmError, match="raise signal_jets"):
        mixture_positions(index, top, 10_000, seed=3)
    out = write_relabelled_skim(skim_dir, tmp_path / "mix", positions, labels, {"seed": 3})
    mixed = JetIndex.from_skim(out)
    assert len(mixed) == len(positions)
    # Same jets (so the same splits), relabelled.
    order = np.argsort(positions, kind="stable")
    assert (mixed.ids() == index.ids(positions[order])).all()
    assert (mixed.labels == labels[order]).all()
    assert (mixed.split_code == index.split_code[positions[order]]).all()
    # Signal efficiency at fixed background efficiency.
    background = np.arange(100) / 100.0  # uniform in [0, 1)
    signal = np.array([0.995, 0.985, 0.5, 0.2])
    assert signal_efficiency(signal, background, 0.005) == 0.25  # no QCD jet may pass
    assert signal_efficiency(signal, background, 0.01) == 0.5  # the cut at 0.985 passes 0.99
    assert signal_efficiency(signal, background, 0.6) == 0.75


def test_aggregate_and_rejection():
    rows = [{"arm": a, "n": n, "seed": s, "x": float(s + n)} for a in "ab" for n in (1, 2)
            for s in range(3)]  # fmt: skip
    out = aggregate(rows, ("arm", "n"), ("x",))
    assert all(o["seeds"] == 3 for o in out)
    assert [(o["arm"], o["n"], o["x_mean"], o["x_std"]) for o in out] == [
        ("a", 1, 2.0, 1.0), ("a", 2, 3.0, 1.0), ("b", 1, 2.0, 1.0), ("b", 2, 3.0, 1.0)
    ]  # fmt: skip
    test = {"per_class": {
        "QCD": {"n_jets": 40}, "Wqq": {"rejection_50": 10.0}, "Tbqq": {"rejection_50": math.inf},
    }}  # fmt: skip
    assert mean_rejection(test) == pytest.approx(25.0)  # inf counts as 40 QCD test jets


def test_study_samples_keep_every_file_of_a_class(tmp_path, monkeypatch):
    """A class of more jets than one file holds has several files, and the skim gets them all."""
    from functools import partial

    from hepmpm.generate import sample as sample_module
    from hepmpm.pipeline import Pipeline
    from hepmpm.studies.common import SampleConfig, StudyConfig, StudyFolder, sample_paths
    from hepmpm.training.stages import Stage

    monkeypatch.setattr(
        sample_module, "SampleRequest", partial(sample_module.SampleRequest, jets_per_file=20)
    )
    config = StudyConfig(seeds=[0], pretrain=Stage(config="tiny"), finetune=Stage(config="tiny"))
    folder = StudyFolder(tmp_path / "study", config, "test", Pipeline(progress=False))
    files = folder.sample(SampleConfig(classes=["QCD", "Wqq"], jets_per_class=50, seed=3))
    assert {c: len(f) for c, f in files.items()} == {"QCD": 3, "Wqq": 3}
    skim = folder.skim("all", sample_paths(files), "sim")
    assert len(JetIndex.from_skim(skim)) == 100
    assert sample_paths(files, ["Wqq"]) == files["Wqq"]


def test_report_only_trains_nothing(studies, tmp_path):
    out = studies["label-efficiency"]
    share = f"samples_dir={out.parent / 'samples'}"
    before = (out / "results.csv").read_text()
    lines = []
    run_study("label-efficiency", out, overrides=[share], tiny=True, echo=lines.append,
              show_progress=False, report_only=True)  # fmt: skip
    assert (out / "results.csv").read_text() == before
    assert not any("not run yet" in line for line in lines)
    # Nothing ran there: every run is listed as missing, and nothing is generated or skimmed.
    fresh, no_samples = tmp_path / "fresh", tmp_path / "samples"
    run_study("label-efficiency", fresh, overrides=[f"samples_dir={no_samples}"], tiny=True,
              echo=lines.append, show_progress=False, report_only=True)  # fmt: skip
    assert any(line.startswith("not run yet (6)") for line in lines), lines
    assert not (fresh / "work").exists() and not no_samples.exists()
    with pytest.raises(HepmpmError, match="no report-only mode"):
        run_study("cwola", tmp_path / "x", tiny=True, report_only=True)


def test_probe_scan_compares_every_backbone_with_the_random_one(studies, tmp_path, capsys):
    """The probe of each pre-training and of the random-init control at several label counts."""
    out = studies["label-efficiency"]
    args = ["--study", str(out), "--labels", "6,12", "--draws", "2", "--score-jets", "9"]
    assert main(["study", "probe-scan", *args, "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "probe_vs_labels.csv")
    assert [(r["labels"], r["draw"]) for r in rows] == [
        ("6", "0"),
        ("6", "1"),
        ("12", "0"),
        ("12", "1"),
    ]
    assert {"pretrain", "rank", "random"} <= set(rows[0])
    _in(rows, "random", 0, 1)
    # The printed table quotes the sample spread (ddof 1) as the study tables do.
    random_12 = [float(r["random"]) for r in rows if r["labels"] == "12"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| 12 |"))
    assert pm(float(np.mean(random_12)), float(np.std(random_12, ddof=1))) in line


def test_rejection_table_per_class_with_the_jets_it_rests_on(studies, tmp_path, capsys):
    """Each run's QCD rejection per signal class on a test sample, and the QCD jets it rests on."""
    out = studies["label_efficiency_sim_to_real"]
    args = ["--study", str(out), "--sample", "data", "--out", str(tmp_path)]
    assert main(["study", "rejection-table", *args]) == 0
    rows = _rows(tmp_path / "rejection_data.csv")
    assert len(rows) == 2 * len(_rows(out / "results.csv"))  # Wqq and Tbqq; QCD is the background
    tested = json.loads((out / "work/runs/finetune-sim/n12/seed0/test_data.json").read_text())
    mine = {r["class"]: r for r in rows if (r["arm"], r["labels"]) == ("finetune-sim", "12")}
    assert set(mine) == {"Wqq", "Tbqq"}
    for name, row in mine.items():
        expected = tested["per_class"][name]["rejection_50"]
        assert int(row["qcd_jets"]) == tested["per_class"]["QCD"]["n_jets"]
        if math.isinf(expected):
            assert row["rejection_50"] == "" and row["qcd_passing"] == "0"
        else:
            assert float(row["rejection_50"]) == pytest.approx(expected)
            assert int(row["qcd_passing"]) == round(int(row["qcd_jets"]) / expected)
    printed = capsys.readouterr().out
    assert "| finetune-sim | 12 | 1 |" in printed and "| Wqq | Tbqq |" in printed
    assert main(["study", "rejection-table", "--study", str(out), "--sample", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == f"hepmpm study rejection-table: error: {out}: no run has a test on 'nowhere'\n"


def _fake_study(folder: Path, labelled: dict, rows: list[tuple[str, int, int, float]]) -> Path:
    """A study folder as combine reads it: study.json's settings and results.json."""
    folder.mkdir(parents=True)
    settings = {"labelled": labelled, "finetune": {"config": "compact"}, "feature_set": "part17"}
    (folder / "study.json").write_text(json.dumps({"settings": settings}))
    keys = ("arm", "labels", "seed", "accuracy")
    table = [dict(zip(keys, row, strict=True)) for row in rows]
    (folder / "results.json").write_text(json.dumps(table))
    return folder


def test_combine_compares_arms_of_studies_on_the_same_jets_seed_by_seed(tmp_path, capsys):
    from hepmpm.studies import combine

    labelled = {"preset": "sim", "seed": 12}
    main_study = _fake_study(
        tmp_path / "main",
        labelled,
        [
            ("scratch", 100, 0, 0.60),
            ("scratch", 100, 1, 0.64),
            ("scratch", 1000, 0, 0.80),
            ("scratch", 1000, 1, 0.80),
            ("finetune", 100, 0, 0.80),
            ("finetune", 100, 1, 0.82),
        ],
    )
    other = _fake_study(tmp_path / "other", labelled, [
        ("scratch", 100, 0, 0.60), ("scratch-b", 100, 0, 0.5), ("scratch-b", 1000, 0, 0.9),
        ("scratch-b", 100, 1, 0.5), ("scratch-b", 1000, 1, 0.9)])  # fmt: skip
    out = tmp_path / "combined"
    combine.combine(main_study, [(other, ["scratch-b"])], "scratch", ["scratch-b"], out)
    paired = {(r["arm"], r["labels"]): r for r in json.loads((out / "paired.json").read_text())}
    assert paired["finetune", 100]["minus_scratch_mean"] == pytest.approx(0.19)
    assert paired["scratch-b", 1000]["minus_scratch_mean"] == pytest.approx(0.10)
    factor = {r["labels"]: r for r in json.loads((out / "label_efficiency.json").read_text())}
    # finetune's 0.81 at 100: > scratch's best (0.80), but scratch-b reaches 0.9 at 1000.
    assert factor[100]["factor"] == "> 10" and factor[100]["best_scratch_factor"] == "4.77"
    # The command writes the same tables and prints their paths.
    args = ["study", "combine", "--study", str(main_study), "--with", f"{other}:scratch-b",
            "--envelope", "scratch-b", "--out", str(tmp_path / "cli")]  # fmt: skip
    assert main(args) == 0
    names = ("aggregated", "label_efficiency", "paired")
    assert capsys.readouterr().out.split() == [str(tmp_path / "cli" / f"{n}.csv") for n in names]
    for name in names:
        assert (tmp_path / "cli" / f"{name}.json").read_text() == (out / f"{name}.json").read_text()
    # A run both made (scratch N=100 seed 0) must agree: then the union is taken.
    combine.combine(main_study, [(other, ["scratch"])], "scratch", [], out)
    assert json.loads((out / "aggregated.json").read_text())[0]["seeds"] == 2
    # Another labelled sample, a run that differs, or an arm the other lacks: refused.
    moved = _fake_study(tmp_path / "moved", {"preset": "sim", "seed": 13}, [("b", 100, 0, 0.5)])
    redone = _fake_study(tmp_path / "redone", labelled, [("scratch", 100, 1, 0.65)])
    for others, message in (
        ([f"{moved}:b"], "differs from .* in 'labelled'"),
        ([f"{redone}:scratch"], "scratch N=100 seed 1: accuracy 0.6400 in .*: not the same run"),
        ([f"{other}:nope"], "has no arm nope"),
    ):
        args = ["study", "combine", "--study", str(main_study), "--out", str(out), "--with"]
        assert main([*args, *others]) == 2
        assert re.search(message, capsys.readouterr().err)


def test_fine_tunings_on_a_dask_cluster_give_the_sequential_results(studies, tmp_path):
    """The label-efficiency study's fine-tunings on a local cluster of two single-threaded
    worker processes (by its scheduler's address, as ``--scheduler``): the same table."""
    distributed = pytest.importorskip("distributed")
    out = studies["label-efficiency"]
    share = f"samples_dir={out.parent / 'samples'}"
    lines = []
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        run_study("label-efficiency", tmp_path / "dask", overrides=[share], tiny=True,
                  show_progress=False, echo=lines.append, scheduler=address)  # fmt: skip
    assert any("runs on tcp://" in line for line in lines), lines
    expected = json.loads((out / "results.json").read_text())
    assert json.loads((tmp_path / "dask" / "results.json").read_text()) == expected


def test_a_table_of_runs_not_all_tested_yet(tmp_path):
    """A report of a study under way: a run not yet tested on a sample lacks its columns; the
    table keeps every column, with empty cells (CSV) and no key (JSON) where a run has none."""
    rows = [{"arm": "a", "accuracy": 0.8}, {"arm": "b", "accuracy": 0.7, "accuracy_data": math.nan},
            {"arm": "c", "accuracy": 0.6, "accuracy_data": 0.5}]  # fmt: skip
    csv_path, json_path = write_table(tmp_path / "results", rows)
    with csv_path.open() as handle:
        read = list(csv.DictReader(handle))
    assert [r["accuracy_data"] for r in read] == ["", "", "0.5"]
    assert json.loads(json_path.read_text())[1] == {"arm": "b", "accuracy": 0.7,
                                                    "accuracy_data": None}  # fmt: skip


def test_the_shifted_table_pairs_seeds_and_compares_drops():
    """Per arm, labels and shifted sample: accuracy, drop and |SF - 1| over the seeds, the
    shifted accuracy paired seed by seed against scratch and against the lever's base arm,
    and the drop and |SF - 1| as fractions of scratch's."""
    from hepmpm.studies.shifted import sf_column, shift_rows

    column = sf_column(["Tbqq"], [0.05])
    assert column == "abs_sf_m1_Tbqq_eff_mistag0p05" and sf_column([], [0.05]) is None
    runs = {  # arm -> per seed (sim accuracy, data accuracy, |SF - 1| on data)
        "scratch": [(0.70, 0.66, 0.30), (0.72, 0.68, 0.34)],
        "base": [(0.80, 0.70, 0.40), (0.82, 0.72, 0.40)],
        "lever": [(0.80, 0.78, 0.10), (0.80, 0.76, 0.22)],
    }
    rows = [
        {"arm": arm, "labels": 300, "seed": seed, "accuracy": sim, "accuracy_data": data,
         f"{column}_data": sf}
        for arm, values in runs.items()
        for seed, (sim, data, sf) in enumerate(values)
    ]  # fmt: skip
    table = {r["arm"]: r for r in shift_rows(rows, ["data"], "scratch", {"lever": "base"}, column)}
    lever = table["lever"]
    assert lever["seeds"] == 2 and lever["sample"] == "data"
    assert lever["accuracy_shifted"] == pm(0.77, float(np.std([0.78, 0.76], ddof=1)))
    assert lever["drop"].startswith("0.030 ± ")  # (0.02 + 0.04) / 2
    assert lever["minus_reference"] == "scratch: +0.100 ± 0.028 (within the spread)"
    assert lever["minus_base"] == "base: +0.060 ± 0.028 (within the spread)"
    assert lever["drop_vs_reference"] == "0.75"  # 0.03 / 0.04
    assert lever["abs_sf_m1_vs_reference"] == "0.50"  # 0.16 / 0.32
    assert table["base"]["minus_base"] == "-" and table["scratch"]["drop_vs_reference"] == "1.00"
