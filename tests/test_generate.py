"""Real Pythia 8 + FastJet samples: physics windows, file structure, determinism, resumption."""

from __future__ import annotations

import subprocess
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import make_sample
from scipy.stats import ks_2samp

from hepmpm.atomic import atomic_path
from hepmpm.errors import HepmpmError
from hepmpm.generate import sample as sample_module
from hepmpm.jetclass import CLASS_INDEX, CLASS_NAMES

MASS_WINDOWS = {  # GeV, where the median jet mass of fully hadronic decays must lie
    "Wqq": (65, 95),
    "Zqq": (75, 105),
    "Hbb": (110, 140),
    "Hcc": (110, 140),
    "Hgg": (110, 140),
    "H4q": (110, 140),
    "Tbqq": (145, 200),
}


def _events(path: Path) -> ak.Array:
    return uproot.open(path)["Events"].arrays()


def _class_events(directory: Path, class_name: str) -> ak.Array:
    files = sorted(directory.glob(f"*_{class_name}_*.root"))
    assert files, f"no files for {class_name} in {directory}"
    return ak.concatenate([_events(f) for f in files])


@pytest.mark.parametrize("class_name", sorted(MASS_WINDOWS))
def test_jet_mass_peaks_at_the_resonance(sim_sample, class_name):
    events = _class_events(sim_sample, class_name)
    low, high = MASS_WINDOWS[class_name]
    assert low < np.median(ak.flatten(events.FatJet_mass)) < high
    assert low - 10 < np.median(ak.flatten(events.FatJet_msoftdrop)) < high


def test_qcd_mass_is_broad_and_low(sim_sample):
    events = _class_events(sim_sample, "QCD")
    mass = ak.to_numpy(ak.flatten(events.FatJet_mass))
    assert np.median(mass) < 110
    assert np.quantile(mass, 0.75) - np.quantile(mass, 0.25) > 30  # broad
    assert np.median(ak.flatten(events.FatJet_msoftdrop)) < 60  # grooming removes soft QCD


def test_files_are_compressed_as_cmssw_writes_nanoaod(sim_sample):
    for path in sim_sample.glob("*.root"):
        assert uproot.open(path).file.compression == uproot.LZMA(9)


def test_labels_kinematics_and_constituent_counts(sim_sample):
    for class_name in CLASS_NAMES:
        events = _class_events(sim_sample, class_name)
        jets = events.FatJet_pt
        assert ak.sum(ak.num(jets)) == 48
        assert ak.all(events.FatJet_truthLabel == CLASS_INDEX[class_name])
        assert ak.all((events.FatJet_pt > 500) & (events.FatJet_pt < 1000))
        assert ak.all(abs(events.FatJet_eta) < 2.0)
        # nConstituents agrees with the FatJetPFCands links, jet by jet
        for n_const, jet_idx in zip(
            events.FatJet_nConstituents, events.FatJetPFCands_jetIdx, strict=True
        ):
            counts = np.bincount(ak.to_numpy(jet_idx), minlength=len(n_const))
            assert counts.tolist() == ak.to_list(n_const)


def test_b_hadrons_fly(sim_sample):
    """Displaced tracks (|d0|/d0Err > 3) are far more frequent in H->bb than in QCD jets."""

    def displaced_fraction(class_name):
        ev = _class_events(sim_sample, class_name)
        charged = ev.PFCands_charge != 0
        significance = abs(ev.PFCands_d0[charged]) / ev.PFCands_d0Err[charged]
        return ak.mean(significance > 3)

    assert displaced_fraction("Hbb") > 3 * displaced_fraction("QCD")


def test_leptonic_classes_have_leptons(sim_sample):
    for class_name in ("Hqql", "Tbl"):
        ev = _class_events(sim_sample, class_name)
        pdg = abs(ev.PFCands_pdgId)
        leptons_per_event = ak.sum((pdg == 11) | (pdg == 13), axis=1)
        assert ak.mean(leptons_per_event > 0) > 0.6


def test_coffea_reads_pfnano_and_constituents_line_up(sim_sample):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    path = next(sim_sample.glob("sim_Tbqq_*.root"))
    events = NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager"
    ).events()
    links = events.FatJetPFCands
    cands = events.PFCands[links.pFCandsIdx]
    # Sum the constituents of each jet (grouped by jetIdx) and compare with the FatJet.
    for ev_jets, ev_links, ev_cands in zip(events.FatJet, links, cands, strict=True):
        for j, jet in enumerate(ev_jets):
            mine = ev_cands[ev_links.jetIdx == j]
            px = ak.sum(mine.pt * np.cos(mine.phi))
            py = ak.sum(mine.pt * np.sin(mine.phi))
            assert np.hypot(px, py) == pytest.approx(jet.pt, rel=1e-3)
            assert len(mine) == jet.nConstituents


def test_nanoaod_v15_naming(tmp_path):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    make_sample(
        tmp_path, classes=("Wqq",), jets=12, naming="nanoaod-v15", workers=1, compression="zlib:4"
    )
    path = next(tmp_path.glob("*.root"))
    assert uproot.open(path).file.compression == uproot.ZLIB(4)
    keys = set(uproot.open(path)["Events"].keys())
    assert {"nPFCand", "PFCand_pt", "PFCand_pdgId", "FatJetPFCand_pfCandIdx"} <= keys
    assert not any(k.startswith("PFCands") for k in keys) and "PFCand_d0" not in keys
    events = NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode="eager"
    ).events()
    assert ak.sum(ak.num(events.FatJet)) == 12
    assert ak.sum(events.FatJet.nConstituents) == ak.sum(ak.num(events.FatJetPFCand))


def test_same_seed_same_arrays_whatever_the_workers(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_sample(a, classes=("QCD", "Hbb"), jets=10, jets_per_file=5, workers=1, seed=11)
    make_sample(b, classes=("QCD", "Hbb"), jets=10, jets_per_file=5, workers=2, seed=11)
    names = sorted(p.name for p in a.glob("*.root"))
    assert names == sorted(p.name for p in b.glob("*.root")) and len(names) == 4
    for name in names:
        left, right = _events(a / name), _events(b / name)
        assert left.fields == right.fields
        for field in left.fields:
            assert ak.all(left[field] == right[field]), field
    other = tmp_path / "c"
    make_sample(other, classes=("QCD",), jets=10, jets_per_file=5, workers=1, seed=12)
    assert not ak.all(_events(other / names[-1]).FatJet_pt == _events(a / names[-1]).FatJet_pt)


def test_sim_and_data_differ_beyond_noise(shift_samples):
    sim, data = shift_samples
    for class_name in ("Wqq", "Tbqq"):
        n_sim = ak.to_numpy(ak.flatten(_class_events(sim, class_name).FatJet_nConstituents))
        n_data = ak.to_numpy(ak.flatten(_class_events(data, class_name).FatJet_nConstituents))
        assert ks_2samp(n_sim, n_data).pvalue < 1e-3, class_name
        # truth labels stay in the pseudo-data
        assert ak.all(_class_events(data, class_name).FatJet_truthLabel == CLASS_INDEX[class_name])


def test_rerun_skips_complete_files_and_resumes(tmp_path):
    make_sample(tmp_path, classes=("Wqq",), jets=8, jets_per_file=4, workers=1)
    first, second = sorted(tmp_path.glob("*.root"))
    reference = _events(second)
    mtime = first.stat().st_mtime_ns
    second.unlink()  # as if the run had been killed before the second file was renamed
    make_sample(tmp_path, classes=("Wqq",), jets=8, jets_per_file=4, workers=1)
    assert first.stat().st_mtime_ns == mtime  # skipped
    assert ak.all(_events(second).FatJet_pt == reference.FatJet_pt)  # remade identically
    with pytest.raises(HepmpmError, match="other settings"):
        make_sample(tmp_path, classes=("Wqq",), jets=8, jets_per_file=4, workers=1, seed=99)


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def crash(self, path, compression):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half a file")
            raise KeyboardInterrupt

    monkeypatch.setattr(sample_module.NanoAODBuilder, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        make_sample(tmp_path, classes=("Wqq",), jets=3, workers=1)
    assert list(tmp_path.glob("*.root")) == []
    assert [p.name for p in tmp_path.iterdir() if p.name != "generation.json"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--classes", "QCD,Hxx", "--jets-per-class", "3"], "unknown jet class 'Hxx'"),
        (["--preset", "mc", "--jets-per-class", "3"], "unknown preset 'mc'"),
        (["--jets-per-class", "0"], "positive integer"),
        (["--jets-per-class", "-5"], "positive integer"),
        (["--jets-per-class", "3", "--compression", "lzma"], "compression 'lzma': use ALGORITHM"),
        (["--jets-per-class", "3", "--compression", "gzip:4"], "compression 'gzip:4': use"),
    ],
)
def test_cli_bad_input_is_one_clear_line(tmp_path, args, message):
    result = subprocess.run(
        ["hepmpm", "generate", *args, "--out", str(tmp_path / "out")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("preset", "message"),
    [
        ("pythia: {settings: ['TimeShower:alphaSvalueX = 0.1']}",
         "rejected the setting 'TimeShower:alphaSvalueX = 0.1' (preset key pythia.settings)"),
        ("pythia: {settings: ['TimeShower:alphaSvalue = banana']}", "Pythia 8 rejected"),
        ("detector: {ecal: {energy_scale: -1}}", "key 'detector.ecal.energy_scale'"),
    ],
)  # fmt: skip
def test_a_bad_preset_is_one_clear_line_and_writes_nothing(tmp_path, preset, message):
    path = tmp_path / "mine.yaml"
    path.write_text(f"inherit: sim.yaml\nname: mine\n{preset}\n")
    out = tmp_path / "out"
    result = subprocess.run(
        ["hepmpm", "generate", "--preset", str(path), "--jets-per-class", "2", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_cli_unwritable_output(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = subprocess.run(
        ["hepmpm", "generate", "--jets-per-class", "3", "--out", str(blocker / "sub")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "not writable" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
