"""`hepmpm study sim-to-real-adaptation --tiny`: the levers' arms read their own unlabelled
target jets (disjoint from the test samples), and every run records the embedding's domain AUC,
the levers' numbers and the data/simulation scale factors on both shifted samples."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from hepmpm.calibration.truth_scale_factors import ScaleFactorConfig, scale_factor_values
from hepmpm.errors import ConfigError
from hepmpm.studies.runner import run_study


def test_tiny_study(tmp_path):
    out = tmp_path / "study"
    run_study("sim-to-real-adaptation", out, tiny=True, show_progress=False)
    with (out / "results.csv").open() as handle:
        rows = {r["arm"]: r for r in csv.DictReader(handle)}
    assert set(rows) == {"scratch", "finetune-sim", "data-levers", "sim-stats-shift2",
                         "finetune-continued", "finetune-continued-sim"}  # fmt: skip
    for row in rows.values():
        for sample in ("data", "shift2"):
            assert 0 <= float(row[f"accuracy_{sample}"]) <= 1
            assert 0 <= float(row[f"domain_auc_{sample}"]) <= 1
            assert float(row[f"abs_sf_m1_Tbqq_eff_mistag0p5_{sample}"]) >= 0
            assert float(row[f"sf_err_Tbqq_mistag_mistag0p5_{sample}"]) >= 0
    levers = rows["data-levers"]
    assert 1 <= float(levers["dctr_ess"]) <= 12 and 0 <= float(levers["dann_domain_auc"]) <= 1
    assert math.isnan(float(rows["scratch"]["dctr_ess"] or "nan"))  # no lever, no ESS
    work = out / "work"
    run = work / "runs" / "data-levers" / "n12" / "seed0"
    record = json.loads((run / "tagger.json").read_text())
    assert record["adaptation"]["target"] == str(work / "skims" / "target-data")
    assert record["pretrained"] == str(work / "pretrain" / "pretrain")  # the data backbone
    # The continued variant starts from the shipped backbone's weights and trains on the corpus.
    continued = json.loads((work / "pretrain" / "continued" / "backbone.json").read_text())
    assert continued["init"]["from"] == "pretrained:compact-sim4-stdin-mask60-gpu"
    assert continued["init"]["weights"] == "mpm"  # its heads too: the same recipe continues
    assert continued["steps"] == 4 and continued["backbone"]["dim"] == 64  # the shipped one's
    assert continued["skim"]["path"] == str(work / "skims" / "corpus")
    # Its control continues on the labelled sample's own (train) jets instead of the corpus.
    control = json.loads((work / "pretrain" / "continued-sim" / "backbone.json").read_text())
    assert control["skim"]["path"] == str(work / "skims" / "labelled")
    assert control["init"]["from"] == continued["init"]["from"]
    shift2 = json.loads((work / "runs" / "sim-stats-shift2" / "n12" / "seed0" / "tagger.json")
                        .read_text())  # fmt: skip
    assert shift2["adaptation"]["target"].endswith("target-shift2")
    # The levers' target jets are other jets than the test samples' (other seeds).
    study = json.loads((out / "study.json").read_text())
    seeds = {(s["preset"], s["seed"]) for s in study["settings"]["targets"].values()}
    tests = {(s["preset"], s["seed"]) for s in study["settings"]["test_samples"].values()}
    assert seeds and not seeds & tests
    summary = (out / "summary.md").read_text()
    assert "Domain measures" in summary and "domain_auc_shift2" in summary
    assert "Simulation to the shifted samples" in summary
    with (out / "shifted.csv").open() as handle:
        shifted = list(csv.DictReader(handle))
    assert {(r["arm"], r["sample"]) for r in shifted} == {
        (arm, sample) for arm in rows for sample in ("data", "shift2")
    }
    # An arm is paired with its base: the continued backbone against the one it continued.
    continued_rows = [r for r in shifted if r["arm"] == "finetune-continued"]
    assert all(r["minus_base"].startswith("finetune-sim: ") for r in continued_rows)
    # The scores each shifted test reads twice (accuracy, scale factors) are kept, and they are
    # the scores behind the run's accuracy there.
    kept = np.load(run / "scores_data.npz")
    accuracy = float((kept["scores"].argmax(1) == kept["truth"]).mean())
    assert accuracy == pytest.approx(float(rows["data-levers"]["accuracy_data"]))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("arms=[{name: scratch, mode: scratch, target: nowhere}]",
         "target 'nowhere' is not one of targets"),
        ("arms=[{name: scratch, mode: scratch, base: nowhere}]", "base 'nowhere' is not an arm"),
        ("pretrain_on_labelled_jets=[x]", "pretrain_on_labelled_jets: 'x' is not a variant"),
        ("continue_from={nothing: 'pretrained:compact-sim4'}",
         "continue_from: 'nothing' is not a variant"),
        ("targets.data.seed=33", "need different seeds"),
    ],
)  # fmt: skip
def test_bad_study_configs_are_refused_naming_the_key(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run_study("sim-to-real-adaptation", tmp_path / "x", tiny=True, overrides=[override])


def test_scale_factors_of_a_known_shift():
    """Pseudo-data whose signal scores are all a bit lower: fewer signal jets pass the
    simulation's working point, so the efficiency SF is below 1 by a computable amount."""
    rng = np.random.default_rng(0)
    names = ["QCD", "Tbqq"]

    def jets(n, shift):
        truth = np.repeat([0, 1], n)
        p_top = np.clip(np.where(truth == 1, 0.7, 0.3) + rng.normal(0, 0.15, 2 * n), 0, 1)
        p_top = np.where(truth == 1, np.clip(p_top - shift, 0, 1), p_top)
        return np.stack([1 - p_top, p_top], 1), truth

    sim, data = jets(20000, 0.0), jets(20000, 0.05)
    config = ScaleFactorConfig(signals=["Tbqq"], mistag=[0.05])
    values = scale_factor_values(sim, data, names, config)
    assert list(values) == config.columns()
    assert values["sf_Tbqq_mistag_mistag0p05"] == pytest.approx(1.0, abs=0.1)  # QCD unchanged
    threshold = np.quantile(sim[0][sim[1] == 0, 1], 0.95)
    expected = np.mean(data[0][data[1] == 1, 1] >= threshold) / np.mean(
        sim[0][sim[1] == 1, 1] >= threshold
    )
    assert values["sf_Tbqq_eff_mistag0p05"] == pytest.approx(expected, abs=0.01)
    assert values["sf_Tbqq_eff_mistag0p05"] < 0.9
    assert values["abs_sf_m1_Tbqq_eff_mistag0p05"] == pytest.approx(
        1 - values["sf_Tbqq_eff_mistag0p05"]
    )
    assert 0 < values["sf_err_Tbqq_eff_mistag0p05"] < 0.02
    # A working point the simulation cannot reach: NaN, not a stopped study.
    unreachable = ScaleFactorConfig(signals=["Tbqq"], mistag=[1e-5])
    assert all(math.isnan(v) for v in scale_factor_values(sim, data, names, unreachable).values())


def test_cwola_on_data_from_several_backbones(tmp_path):
    """CWoLa on pseudo-data mixtures: pre-trained on the data jets themselves, from the shipped
    sim backbone, and from scratch, each scored on the data's truth."""
    out = tmp_path / "cwola"
    run_study("cwola", out, "cwola_data", tiny=True, show_progress=False)
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    arms = {r["arm"] for r in rows}
    assert arms == {"scratch", "pre-trained (finetune)", "sim"}
    assert all(0 <= float(r["auc"]) <= 1 for r in rows)
    truth = json.loads((out / "work" / "skims" / "truth" / "manifest.json").read_text())
    assert {s["domain"] for s in truth["shards"]} == {"data"}
    sim = json.loads((out / "work" / "runs" / "sim" / "n24" / "seed0" / "tagger.json").read_text())
    assert sim["pretrained"].endswith("compact-sim4-stdin-mask60-gpu")
