"""hepmpm calibrate: working points, scale factors, correctionlib JSON, closure, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import correctionlib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_sample
from scipy.stats import beta
from tagger_models import make_tagger_dir

from hepmpm.calibration.efficiency import COVERAGE, binned_efficiency, efficiency_from_counts
from hepmpm.calibration.run import CORRECTIONS_NAME as CORRECTIONS
from hepmpm.calibration.run import CalibrationRequest, run_calibration
from hepmpm.calibration.scale_factors import scale_factors
from hepmpm.calibration.working_points import (
    WorkingPointSpec,
    find_threshold,
    parse_working_points,
)
from hepmpm.cli import main
from hepmpm.errors import HepmpmError
from hepmpm.jetclass import CLASS_NAMES

QCD, TOP = CLASS_NAMES.index("QCD"), CLASS_NAMES.index("Tbqq")
PT_EDGES, ETA_EDGES = [500.0, 600.0, 700.0, 1000.0], [0.0, 1.0, 2.4]


def write_tag_folder(
    out: Path, labels, pt, eta, probs, sha: str = "a" * 64, classes=CLASS_NAMES
) -> Path:
    """A folder shaped like `hepmpm tag --out`: summary.json + one scores parquet file, the
    model's outputs ``classes`` (the columns of ``probs``)."""
    (out / "scores" / "ds").mkdir(parents=True)
    columns = {"label": np.asarray(labels, np.int32), "jet_pt": np.asarray(pt, np.float32),
               "jet_eta": np.asarray(eta, np.float32)}  # fmt: skip
    columns |= {f"score_{c}": probs[:, i].astype(np.float32) for i, c in enumerate(classes)}
    pq.write_table(pa.table(columns), out / "scores" / "ds" / "part.parquet")
    summary = {"model": "/m.onnx", "model_sha256": sha, "config_hash": "c",
               "class_names": list(classes)}  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary))
    return out


def synthetic_jets(n: int, seed: int, top_shift: float = 0.0):
    """QCD and Tbqq jets with separated scores; ``top_shift`` moves the top jets' logits."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.5, TOP, QCD)
    logits = rng.normal(0, 1, (n, len(CLASS_NAMES)))
    logits[:, TOP] += np.where(labels == TOP, 2.0 + top_shift, 0.0)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, rng.uniform(500, 1000, n), rng.uniform(-2.4, 2.4, n), probs


@pytest.fixture(scope="module")
def synthetic_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    sim = write_tag_folder(root / "sim", *synthetic_jets(4000, 1))
    data = write_tag_folder(root / "data", *synthetic_jets(3000, 2, top_shift=-0.4))
    return sim, data


def test_working_point_thresholds_by_hand():
    background = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.0])
    signal = np.array([0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25])
    wp = find_threshold(WorkingPointSpec("mistag", 0.2), signal, background)
    assert wp.threshold == pytest.approx(0.75)  # half-way between the 2nd and 3rd QCD scores
    assert (wp.sim_mistag, wp.sim_efficiency) == (0.2, 3 / 8)
    wp = find_threshold(WorkingPointSpec("mistag", 0.25), signal, background)
    assert wp.threshold == pytest.approx(0.75)  # 2.5 jets allowed: still 2
    wp = find_threshold(WorkingPointSpec("eff", 0.5), signal, background)
    assert wp.threshold == pytest.approx(0.6) and wp.sim_efficiency == 0.5
    wp = find_threshold(WorkingPointSpec("eff", 0.3), signal, background)  # 2.4 -> 3 jets
    assert wp.threshold == pytest.approx(0.7) and wp.sim_efficiency == 3 / 8
    tied = np.array([0.9, 0.8, 0.8, 0.8, 0.1])  # 2 of 5 allowed, but a cut cannot split a tie
    assert find_threshold(WorkingPointSpec("mistag", 0.4), signal, tied).sim_mistag == 0.2
    with pytest.raises(
        HepmpmError, match="needs at least 100 QCD jets in simulation, there are 10"
    ):
        find_threshold(WorkingPointSpec("mistag", 0.01), signal, background)
    with pytest.raises(HepmpmError, match="cannot be reached"):
        find_threshold(WorkingPointSpec("mistag", 0.5), signal, np.full(10, 0.5))


def test_parse_working_points():
    specs = parse_working_points(["mistag=0.01,0.05", "eff=0.5"])
    assert [s.name for s in specs] == ["mistag0p01", "mistag0p05", "eff0p5"]
    assert parse_working_points("mistag=0.01,eff=0.5")[1] == WorkingPointSpec("eff", 0.5)
    for bad, message in (("fake=0.1", "KIND"), ("mistag=x", "not a number"),
                         ("mistag=1.5", r"in \(0, 1\)"), ("mistag=0.1,0.1", "repeat")):  # fmt: skip
        with pytest.raises(HepmpmError, match=message):
            parse_working_points(bad)


def test_scale_factor_and_uncertainty_by_hand():
    sim = efficiency_from_counts(np.array([[40, 0, 5]]), np.array([[100, 10, 0]]))
    data = efficiency_from_counts(np.array([[30, 2, 1]]), np.array([[90, 10, 4]]))
    alpha = (1 - COVERAGE) / 2
    low, high = beta.ppf(alpha, 30, 61), beta.ppf(1 - alpha, 31, 60)  # 30 of 90 jets
    np.testing.assert_allclose([data.low[0, 0], data.high[0, 0]], [low, high], rtol=1e-9)
    sf = scale_factors(data, sim, np.array([500.0, 600, 700, 1000]), np.array([0.0, 2.4]))
    e_d, e_s = 30 / 90, 0.4
    s_low, s_high = beta.ppf(alpha, 40, 61), beta.ppf(1 - alpha, 41, 60)
    up = np.hypot((high - e_d) / e_s, e_d * (e_s - s_low) / e_s**2)
    down = np.hypot((e_d - low) / e_s, e_d * (s_high - e_s) / e_s**2)
    assert sf.nominal[0, 0] == pytest.approx(e_d / e_s)
    assert sf.up[0, 0] == pytest.approx(e_d / e_s + up)
    assert sf.down[0, 0] == pytest.approx(e_d / e_s - down)
    # no passing simulated jet, no simulated jet at all: SF 1 +1 -1 and a flag, never NaN
    assert list(sf.flag[0]) == ["ok", "no_sim_pass", "empty"]
    np.testing.assert_array_equal(sf.nominal[0, 1:], 1.0)
    np.testing.assert_array_equal(sf.up[0, 1:], 2.0)
    np.testing.assert_array_equal(sf.down[0, 1:], 0.0)


def no_nan(text: str):
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))


def test_correctionlib_file_evaluates_to_the_summary(synthetic_pair, tmp_path):
    sim, data = synthetic_pair
    request = CalibrationRequest(
        sim=sim, data=data, signal="Tbqq", background="QCD", out=tmp_path / "cal",
        working_points=parse_working_points("mistag=0.05,eff=0.5"),
        pt_edges=PT_EDGES, eta_edges=ETA_EDGES,
    )  # fmt: skip
    summary = run_calibration(request)
    text = (tmp_path / "cal" / "scale_factors.json").read_text()
    no_nan(text)
    no_nan((tmp_path / "cal" / "calibration.json").read_text())
    evaluator = correctionlib.CorrectionSet.from_string(text)
    assert sorted(evaluator) == sorted(
        ["TbqqvsQCD_mistag0p05", "TbqqvsQCD_mistag0p05_mistag",
         "TbqqvsQCD_eff0p5", "TbqqvsQCD_eff0p5_mistag"]
    )  # fmt: skip
    for wp in summary["working_points"]:
        for panel in ("signal", "mistag"):
            correction = wp["corrections"][panel]
            for b in correction["bins"]:
                pt, eta = np.mean(b["pt"]), np.mean(b["abseta"])
                for key, var in (("sf", "nominal"), ("sf_up", "up"), ("sf_down", "down")):
                    got = evaluator[correction["name"]].evaluate(pt, eta, var)
                    assert got == pytest.approx(b[key], rel=1e-12)
                assert b["flag"] == "ok" and b["sim_total"] > 100
    top = summary["working_points"][1]["corrections"]["signal"]["bins"]
    assert all(b["sf"] < 1 for b in top)  # data's top jets were made less top-like
    assert summary["working_points"][0]["sim_mistag"] <= 0.05
    for name in ("efficiency_mistag0p05.png", "sf_eff0p5.png"):
        assert (tmp_path / "cal" / "plots" / name).stat().st_size > 10_000


def test_empty_bins_are_flagged(synthetic_pair, tmp_path):
    sim, data = synthetic_pair
    summary = run_calibration(
        CalibrationRequest(
            sim=sim, data=data, signal="Tbqq", background="QCD", out=tmp_path / "cal",
            working_points=parse_working_points("mistag=0.05"),
            pt_edges=[500.0, 1000.0, 1200.0], eta_edges=[0.0, 2.4],
            plots=False,
        ),
    )  # fmt: skip
    assert {(tuple(b["pt"]), b["flag"]) for b in summary["flagged_bins"]} == {
        ((1000.0, 1200.0), "empty")
    }
    evaluator = correctionlib.CorrectionSet.from_file(str(tmp_path / "cal" / "scale_factors.json"))
    sf = evaluator["TbqqvsQCD_mistag0p05"]
    assert [sf.evaluate(1100.0, 0.5, v) for v in ("nominal", "up", "down")] == [1.0, 2.0, 0.0]


def test_bad_inputs_are_clear_errors(synthetic_pair, tmp_path, capsys):
    sim, data = synthetic_pair
    other = write_tag_folder(tmp_path / "other", *synthetic_jets(200, 3), sha="b" * 64)
    base = ["calibrate", "--sim", str(sim), "--signal", "Tbqq", "--out", str(tmp_path / "o")]
    cases = [
        (["--data", str(other), "--working-points", "mistag=0.05"], "different models"),
        (["--data", str(data), "--working-points", "mistag=0.0001"], "cannot be reached"),
        (["--data", str(data), "--working-points", "mistag=0.05", "--signal", "Zbb"],
         "no class 'Zbb'"),
        (["--data", str(tmp_path), "--working-points", "mistag=0.05"], "no summary.json"),
        (["--data", str(data), "--working-points", "mistag=0.05", "--pt-bins", "700,600"],
         "increasing"),
    ]  # fmt: skip
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def tagged_pair(tmp_path_factory):
    """Real pseudo-data: QCD and top jets from the sim and data presets, tagged by one model."""
    from hepmpm.export import export_tagger

    from hepmpm.tag import TagRequest, run_tag

    root = tmp_path_factory.mktemp("pair")
    model = export_tagger(make_tagger_dir(root / "ft", seed=3), root / "model.onnx").path
    folders = []
    for preset in ("sim", "data"):
        make_sample(root / preset, preset, classes=("QCD", "Tbqq"), jets=120, seed=11)
        run_tag(TagRequest(model=model, inputs=[root / preset], out=root / f"tag_{preset}"),
                show_progress=False)  # fmt: skip
        folders.append(root / f"tag_{preset}")
    return model, folders[0], folders[1], root / "sim"


def test_cli_calibrate_and_closure_on_pseudo_data(tagged_pair, tmp_path, capsys):
    """Weighting simulated top jets by the SF file (pass: SF, fail: (1 - SF eps)/(1 - eps), per
    bin) reproduces the data efficiency within its uncertainty."""
    from hepmpm.calibration.inputs import read_tagged

    _, sim, data, _ = tagged_pair
    out = tmp_path / "cal"
    assert main(["calibrate", "--sim", str(sim), "--data", str(data), "--signal", "Tbqq",
                 "--working-points", "mistag=0.1", "--pt-bins", "500,650,1000",
                 "--out", str(out), "--no-plots"]) == 0  # fmt: skip
    assert "mistag0p1: threshold" in capsys.readouterr().out
    summary = json.loads((out / "calibration.json").read_text())
    wp = summary["working_points"][0]
    evaluator = correctionlib.CorrectionSet.from_file(str(out / "scale_factors.json"))
    edges = np.array(summary["pt_edges"]), np.array(summary["eta_edges"])
    for panel, label in (("signal", TOP), ("mistag", QCD)):
        jets = {k: read_tagged(f) for k, f in (("sim", sim), ("data", data))}
        passed, chosen = {}, {}
        for k, j in jets.items():
            chosen[k] = j.label == label
            passed[k] = j.discriminant("Tbqq", "QCD")[chosen[k]] >= wp["threshold"]
        s = jets["sim"]
        pt, eta = s.pt[chosen["sim"]], s.abseta[chosen["sim"]]
        sf = evaluator[wp["corrections"][panel]["name"]].evaluate(pt, eta, "nominal")
        eps_sim = binned_efficiency(passed["sim"], pt, eta, *edges)
        i = np.searchsorted(edges[0], pt, side="right") - 1
        e = eps_sim.efficiency[i, 0]
        weight = np.where(passed["sim"], sf, (1 - sf * e) / (1 - e))
        reweighted = weight[passed["sim"]].sum() / weight.sum()
        d = jets["data"]
        data_eff = binned_efficiency(
            passed["data"], d.pt[chosen["data"]], d.abseta[chosen["data"]],
            np.array([500.0, 1000.0]), np.array([0.0, 2.4]),
        )  # fmt: skip
        sim_eff = passed["sim"].mean()
        assert data_eff.low[0, 0] <= reweighted <= data_eff.high[0, 0], panel
        # per bin the closure is exact: that is what the SF is
        for b, row in enumerate(wp["corrections"][panel]["bins"]):
            in_bin = i == b
            assert weight[in_bin & passed["sim"]].sum() / weight[in_bin].sum() == pytest.approx(
                row["data_efficiency"]
            )
        assert (
            abs(reweighted - data_eff.efficiency[0, 0])
            <= abs(sim_eff - data_eff.efficiency[0, 0]) + 0.02
        )


def test_coffea_processor_weights_equal_calibrate(tagged_pair, tmp_path):
    """The example's coffea processor (hepmpm.tag_fatjets + correctionlib's evaluator on the SF
    file) weights each selected jet as hepmpm calibrate's own bin table does."""
    import importlib.util

    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from hepmpm.calibration.run import read_scale_factors

    model, sim, data, sample = tagged_pair
    out = tmp_path / "cal"
    run_calibration(
        CalibrationRequest(
            sim=sim, data=data, signal="Tbqq", background="QCD", out=out,
            working_points=parse_working_points("mistag=0.2"), pt_edges=[500.0, 650.0, 1000.0],
            plots=False,
        ),
    )  # fmt: skip
    path = Path(__file__).resolve().parents[1] / "examples" / "calibrated_analysis.py"
    spec = importlib.util.spec_from_file_location("calibrated_analysis", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    analysis = example.CalibratedTagAnalysis(model, out, "mistag0p2")
    runner = processor.Runner(
        executor=processor.IterativeExecutor(), schema=NanoAODSchema, chunksize=100
    )
    output = runner(example.make_fileset([sample]), processor_instance=analysis)
    jets = {k: np.concatenate([c[k] for c in output["jets"].values()])
            for k in ("pt", "abseta", "label", *example.VARIATIONS)}  # fmt: skip
    assert {TOP, QCD} <= set(jets["label"]) and len(jets["pt"]) > 20
    for panel, label in (("signal", TOP), ("mistag", QCD)):
        table = read_scale_factors(out, f"TbqqvsQCD_mistag0p2{'_mistag' * (panel == 'mistag')}")
        is_class = jets["label"] == label
        for variation in example.VARIATIONS:
            expected = table.lookup(jets["pt"][is_class], jets["abseta"][is_class], variation)
            np.testing.assert_allclose(jets[variation][is_class], expected, rtol=1e-12)
    mass = output["mass"]
    assert mass[{"systematic": "nominal"}].sum().value == pytest.approx(jets["nominal"].sum())
    assert mass[{"systematic": "up"}].sum().value == pytest.approx(jets["up"].sum())


@pytest.fixture(scope="module")
def qcd_data(tmp_path_factory):
    """Labelled pseudo-data, and its QCD jets alone as real data would come (labels -1)."""
    root = tmp_path_factory.mktemp("control")
    labels, pt, eta, probs = synthetic_jets(3000, 5, top_shift=-0.4)
    labelled = write_tag_folder(root / "labelled", labels, pt, eta, probs)
    keep = labels == QCD
    unlabelled = write_tag_folder(
        root / "unlabelled", np.full(keep.sum(), -1), pt[keep], eta[keep], probs[keep]
    )
    return labelled, unlabelled


def _mistag_bins(summary):
    return [
        (b["data_passed"], b["data_total"], b["sf"], b["sf_up"], b["sf_down"])
        for b in summary["working_points"][0]["corrections"]["mistag"]["bins"]
    ]


def test_control_region_measures_the_mistag_sf_without_truth(synthetic_pair, qcd_data, tmp_path):
    """On data without labels, a pure background control region gives the mistag SF that truth
    gives on the same jets, and no signal SF (which it cannot measure)."""
    sim, _ = synthetic_pair
    labelled, unlabelled = qcd_data

    def calibrate(data, out, region=None):
        request = CalibrationRequest(
            sim=sim, data=data, signal="Tbqq", background="QCD", out=tmp_path / out,
            working_points=parse_working_points("mistag=0.05"), control_region=region,
        )  # fmt: skip
        return run_calibration(request)

    truth = calibrate(labelled, "truth")
    region = calibrate(unlabelled, "region", "jet_pt >= 0")
    assert _mistag_bins(region) == _mistag_bins(truth)
    assert set(region["working_points"][0]["corrections"]) == {"mistag"}
    assert region["data_truth"] is False and region["control_region"] == "jet_pt >= 0"
    assert region["control_region_purity_sim"] == pytest.approx(0.5, abs=0.05)
    evaluator = correctionlib.CorrectionSet.from_file(str(tmp_path / "region" / CORRECTIONS))
    assert list(evaluator) == ["TbqqvsQCD_mistag0p05_mistag"]
    # A narrower region: the simulated reference is the background jets of the same selection.
    low = calibrate(unlabelled, "low", "jet_pt < 700 and abseta < 2")
    assert sum(b[1] for b in _mistag_bins(low)) == int(
        ((read_pt(unlabelled) < 700) & (np.abs(read_eta(unlabelled)) < 2)).sum()
    )


def read_pt(folder):
    return pq.read_table(folder / "scores" / "ds" / "part.parquet")["jet_pt"].to_numpy()


def read_eta(folder):
    return pq.read_table(folder / "scores" / "ds" / "part.parquet")["jet_eta"].to_numpy()


def test_control_region_errors_are_one_line(synthetic_pair, qcd_data, tmp_path, capsys):
    sim, _ = synthetic_pair
    _, unlabelled = qcd_data
    base = ["calibrate", "--sim", str(sim), "--data", str(unlabelled), "--signal", "Tbqq",
            "--working-points", "mistag=0.05", "--out", str(tmp_path / "o")]  # fmt: skip
    cases = [
        ([], "no truth labels; name a background-dominated control region with --control-region"),
        (
            ["--control-region", "jet_mass < 50"],
            "--control-region 'jet_mass < 50': not a selection",
        ),
        (["--control-region", "jet_pt + 1"], "must be a true/false condition"),
        (["--control-region", "jet_pt < 0"], "selects no"),
    ]
    for extra, message in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_tagger_of_some_classes_is_calibrated_on_its_classes_jets(tmp_path):
    """A QCD/Wqq tagger (outputs 0, 1) on samples that also hold Hbb (truth label 1): --signal
    Wqq selects the Wqq jets (truth label 7) by truth, not the jets whose label is the output
    position of Wqq; the efficiencies are those counted by hand on the Wqq jets."""
    hbb, wqq = CLASS_NAMES.index("Hbb"), CLASS_NAMES.index("Wqq")
    rng = np.random.default_rng(3)
    folders, expected = {}, {}
    for name, n, shift in (("sim", 3000, 0.0), ("data", 2000, -0.5)):
        labels = rng.choice([QCD, hbb, wqq], n)
        # Wqq jets score high, Hbb jets low: measuring the wrong ones moves every number.
        logit = rng.normal(0, 1, n) + np.select([labels == wqq, labels == hbb], [2 + shift, -2], 0)
        probs = np.stack([1 / (1 + np.exp(logit)), 1 / (1 + np.exp(-logit))], 1)
        pt, eta = rng.uniform(500, 1000, n), rng.uniform(-2, 2, n)
        folders[name] = write_tag_folder(
            tmp_path / name, labels, pt, eta, probs, classes=("QCD", "Wqq")
        )
        expected[name] = (probs[:, 1], labels)
    summary = run_calibration(
        CalibrationRequest(
            sim=folders["sim"], data=folders["data"], signal="Wqq", background="QCD",
            working_points=parse_working_points(["eff=0.5"]), out=tmp_path / "calib",
            pt_edges=[500, 1000], eta_edges=[0, 2.4], plots=False,
        )
    )  # fmt: skip
    (wp,) = summary["working_points"]
    for panel, label in (("signal", wqq), ("mistag", QCD)):
        (row,) = wp["corrections"][panel]["bins"]
        for name, (score, labels) in expected.items():
            passed = score[labels == label] >= wp["threshold"]
            assert row[f"{name}_total"] == (labels == label).sum()
            assert row[f"{name}_passed"] == passed.sum()
    (sim_row,) = wp["corrections"]["signal"]["bins"]
    assert sim_row["sim_efficiency"] == pytest.approx(0.5, abs=0.01)  # the eff=0.5 point


def test_a_class_outside_jetclass_is_one_line(synthetic_pair, tmp_path, capsys):
    sim, data = synthetic_pair
    summary = json.loads((sim / "summary.json").read_text())
    assert main(["calibrate", "--sim", str(sim), "--data", str(data), "--signal", "Zprime",
                 "--working-points", "eff=0.5", "--out", str(tmp_path / "c")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "Zprime" in err and len(err.splitlines()) == 1 and summary["class_names"]
