"""The examples run as an analyst would run them (tiny settings)."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_plot_generated_masses(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "plot_generated_masses.py"), "--classes", "Wqq",
         "--jets-per-class", "6", "--workers", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "msoftdrop.png").stat().st_size > 10_000


def test_analysis_with_tagger(sim_sample, tmp_path):
    from hepmpm.export import export_tagger
    from tagger_models import make_tagger_dir

    model = export_tagger(make_tagger_dir(tmp_path / "ft"), tmp_path / "model.onnx").path
    files = [str(f) for f in sorted(sim_sample.glob("*.root"))[:2]]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "analysis_with_tagger.py"), "--model", str(model),
         "--out", str(tmp_path / "plots"), "--classes", "QCD,Hbb", "--tiny", "--scores", *files],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "jets tagged" in result.stdout
    for name in ("QCD", "Hbb"):
        assert (tmp_path / "plots" / f"score_{name}.png").stat().st_size > 10_000
    assert list((tmp_path / "plots" / "scores").rglob("*.parquet"))


def test_pretrain_on_data(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "pretrain_on_data.py"), "--out", str(tmp_path / "w"),
         "--tiny"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(("fine", "scr"))]
    assert [(r[0], r[1]) for r in rows] == [
        ("finetune", "sim"), ("finetune", "data"), ("scratch", "sim"), ("scratch", "data"),
    ]  # fmt: skip
    assert all(0 <= float(r[2]) <= 1 and 0 <= float(r[3]) <= 1 for r in rows)
    assert (tmp_path / "w" / "pretrain" / "backbone.json").is_file()


def test_domain_study(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "domain_study.py"), "--out", str(tmp_path / "s"), "--tiny"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # pre-trained on data (finetune), on sim (the shipped backbone), and from scratch
    arms = {line.split()[0] for line in lines if line.startswith(("finetune", "scratch"))}
    assert {"finetune", "finetune-sim", "scratch"} <= arms
    assert (tmp_path / "s" / "accuracy_data_vs_labels.png").stat().st_size > 10_000


def test_calibrated_analysis(sim_sample, tmp_path):
    from hepmpm.export import export_tagger
    from tagger_models import make_tagger_dir

    from hepmpm.cli import main
    from hepmpm.tag import TagRequest, run_tag

    model = export_tagger(make_tagger_dir(tmp_path / "ft"), tmp_path / "model.onnx").path
    files = sorted(sim_sample.glob("sim_QCD_*.root")) + sorted(sim_sample.glob("sim_Tbqq_*.root"))
    run_tag(TagRequest(model=model, inputs=files, out=tmp_path / "tag"), show_progress=False)
    # the same sample as simulation and "data": SFs of 1, enough to run the analysis
    assert main(["calibrate", "--sim", str(tmp_path / "tag"), "--data", str(tmp_path / "tag"),
                 "--signal", "Tbqq", "--working-points", "mistag=0.2", "--pt-bins", "500,1000",
                 "--out", str(tmp_path / "cal"), "--no-plots"]) == 0  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "calibrated_analysis.py"), "--model", str(model),
         "--calibration", str(tmp_path / "cal"), "--working-point", "mistag0p2",
         "--out", str(tmp_path / "plots"), *map(str, files)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "weighted: nominal" in result.stdout
    assert (tmp_path / "plots" / "mass_mistag0p2.png").stat().st_size > 10_000
