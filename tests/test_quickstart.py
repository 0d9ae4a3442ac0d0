"""`hepmpm quickstart --profile tiny`: the whole chain end to end, its report, resume, refusal."""

from __future__ import annotations

import json
import re

import pytest

import hepmpm.quickstart.chain as chain
from hepmpm.cli import main


@pytest.fixture(scope="module")
def interrupted_then_completed(tmp_path_factory):
    """Run the tiny quickstart, interrupt it at the export (as Ctrl-C would), then re-run."""
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    args = ["quickstart", "--profile", "tiny", "--out", str(out), "--no-progress"]
    with pytest.MonkeyPatch.context() as patch:

        def interrupt(*_args, **_kwargs):
            raise KeyboardInterrupt

        patch.setattr(chain, "_export", interrupt)
        assert main(args) == 130
    assert not (out / "report").exists()
    return out, args


def test_interrupted_run_resumes_where_it_stopped(interrupted_then_completed, capsys):
    out, args = interrupted_then_completed
    capsys.readouterr()
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    skipped = [line for line in lines if line.endswith("done before, skipped")]
    # the skims and the six taggers were complete before the interruption
    assert len(skipped) == 8, lines
    assert any("export to ONNX: onnxruntime vs torch" in line for line in lines)
    assert (out / "model" / "tagger.onnx").is_file()


def test_report_shows_the_chain(interrupted_then_completed):
    out, _ = interrupted_then_completed
    report = out / "report"
    markdown = (report / "report.md").read_text()
    for figure in ("accuracy_vs_labels", "rejection_vs_labels", "roc", "scores", "features",
                   "training_curves"):  # fmt: skip
        assert (report / "figures" / f"{figure}.png").stat().st_size > 10_000
        assert f"figures/{figure}.png" in markdown
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6  # one self-contained page
    row = re.search(r"\| accuracy \| ([\d.]+) \| ([\d.]+) \|", markdown)
    assert row, markdown
    assert 0 <= float(row.group(1)) <= 1 and 0 <= float(row.group(2)) <= 1
    assert "Wqq vs QCD: rejection at 50% eff." in markdown


def test_report_says_what_pretraining_buys(interrupted_then_completed):
    """The three arms at both label counts, on both domains, each with its error, the paired
    differences and the data/sim scale factors; the adapted arm read the data jets."""
    out, _ = interrupted_then_completed
    markdown = (out / "report" / "report.md").read_text()
    assert markdown.index("## What pre-training buys") < markdown.index("## What ran")
    assert "pretrained:compact-sim4-stdin-mask60-gpu" in markdown
    gain = json.loads((out / "report" / "metrics.json").read_text())["pretraining_gain"]
    arms = {(r["arm"], r["labels"], r["domain"]): r for r in gain["arms"]}
    names = ("pretrained", "adapted", "scratch")
    assert set(arms) == {(a, n, d) for a in names for n in (24, 48) for d in ("sim", "data")}
    for row in arms.values():
        assert 0 <= row["accuracy"] <= 1 and row["jets"] > 0
        expected = (row["accuracy"] * (1 - row["accuracy"]) / row["jets"]) ** 0.5
        assert row["accuracy_error"] == pytest.approx(expected)
        assert row["mean_rejection_50_error"] >= 0
    pairs = {(d["arm"], d["reference"]) for d in gain["differences"]}
    assert pairs == {("pretrained", "scratch"), ("adapted", "scratch"), ("adapted", "pretrained")}
    assert len(gain["differences"]) == 12
    for d in gain["differences"]:
        arm, reference = (
            arms[name, d["labels"], d["domain"]] for name in (d["arm"], d["reference"])
        )
        assert d["accuracy_difference"] == pytest.approx(arm["accuracy"] - reference["accuracy"])
    for n in (24, 48):
        assert re.search(
            rf"\| {n} \| sim \| \d+ \|( [\d.]+ ± [\d.]+ \|){{3}} [+-][\d.]+ ±", markdown
        )
    factors = {(r["arm"], r["labels"]): r for r in gain["scale_factors"]}
    assert set(factors) == {(a, n) for a in names for n in (24, 48)}
    assert all("sf_Tbqq_eff_mistag0p05" in r for r in factors.values())
    assert "## Data/simulation scale factors" in markdown
    assert "Tbqq efficiency at 5% QCD mistag" in markdown
    adapted = json.loads((out / "taggers" / "adapted-n48" / "tagger.json").read_text())
    assert adapted["adaptation"]["target"] == str(out / "skims" / "data")
    assert "pretrained tagger of 48 labels is the one exported" in markdown


def test_rerun_skips_everything_and_other_profiles_are_refused(interrupted_then_completed, capsys):
    _, args = interrupted_then_completed
    capsys.readouterr()
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    # all but the two generation steps (which check their files themselves) and the report
    assert sum(line.endswith("done before, skipped") for line in lines) == 10
    assert main([*args, "--set", "seed=2"]) == 2
    assert "made with other settings" in capsys.readouterr().err


def test_bad_profile_keys_are_named(tmp_path, capsys):
    code = main(["quickstart", "--out", str(tmp_path / "q"), "--set", "finetun.config=tiny"])
    assert code == 2
    assert "finetun" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
