"""The constituent skim on real inputs: generated samples, the shared CMS files, damaged files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot
from conftest import CMS, make_sample, make_skim, needs_cms, rewrite_events
from hepmpm.processors.jet_constituents import hardest_first_order
from hepmpm.processors.jet_selection import JetSelection

from hepmpm.cli import main
from hepmpm.data.manifest import load_manifest
from hepmpm.data.statistics import FeatureStatistics, particle_keys
from hepmpm.errors import HepmpmError
from hepmpm.features import PART17
from hepmpm.jetclass import CLASS_NAMES


def _read_all(skim: Path) -> ak.Array:
    manifest = load_manifest(skim)
    return ak.concatenate([ak.from_parquet(s.path) for s in manifest.shards])


def _column(jets: ak.Array, feature: str) -> ak.Array:
    return jets.particles[:, :, PART17.names.index(feature)]


def test_generated_sample_skims_into_labelled_shards(skim_dir, sim_sample):
    manifest = load_manifest(skim_dir)
    raw = manifest.raw
    assert raw["feature_set"] == "part17" and raw["features"] == list(PART17.names)
    jets = _read_all(skim_dir)
    generated = json.loads((sim_sample / "generation.json").read_text())
    assert len(jets) == sum(f["jets"] for f in generated["files"].values()) == manifest.n_jets
    # Every class present with its generated count, all labelled, all from the sim domain.
    labels = np.bincount(ak.to_numpy(jets.label), minlength=len(CLASS_NAMES))
    assert labels.tolist() == [48] * len(CLASS_NAMES)
    assert set(jets.domain.tolist()) == {"sim"}
    # Plain types, no missing values: particles are var * F * float32.
    assert str(jets.particles.type.content) == "var * 17 * float32"
    assert str(jets.label.type.content) == "int32" and str(jets.dataset.type.content) == "string"
    # Particles sorted by pT (descending), capped, counted right, finite.
    pt_log = _column(jets, "part_pt_log")
    assert ak.all(pt_log[:, 1:] <= pt_log[:, :-1])
    assert ak.all(ak.num(jets.particles) == jets.n_particles)
    assert ak.max(jets.n_particles) <= 128 and ak.min(jets.n_particles) >= 2
    assert np.isfinite(ak.to_numpy(ak.flatten(jets.particles, axis=None))).all()
    # The counts add up, and the statistics describe the shards.
    for counts in raw["counts"].values():
        skipped = sum(v for k, v in counts.items() if k.startswith("skipped_"))
        assert counts["jets_seen"] == counts["jets_written"] + skipped
    stats = manifest.statistics["part_pt_log"]
    assert stats["mean"] == pytest.approx(float(ak.mean(pt_log)), rel=1e-5)
    assert stats["quantiles"]["0.01"] < stats["quantiles"]["0.5"] < stats["quantiles"]["0.99"]
    assert raw["missing_inputs"] == {}


def test_three_executors_write_identical_shards(sim_sample, tmp_path, capfd):
    files = sorted(sim_sample.glob("*.root"))[:3]
    tables, statistics = {}, {}
    for executor in ("iterative", "futures", "dask"):
        out = tmp_path / executor
        manifest = make_skim(files, out, executor=executor, workers=2, chunksize=20)
        # Without progress: no coffea bar, and no schema warnings from the worker processes.
        printed = capfd.readouterr()
        assert "Processing" not in printed.out + printed.err, executor
        assert "cross-reference" not in printed.err, executor
        assert len(manifest["shards"]) >= 6  # several chunks per file
        tables[executor] = {s["path"]: pq.read_table(out / s["path"]) for s in manifest["shards"]}
        statistics[executor] = manifest["statistics"]
    reference = tables["iterative"]
    for executor in ("futures", "dask"):
        assert tables[executor].keys() == reference.keys()
        for path, table in reference.items():
            assert tables[executor][path].equals(table), (executor, path)
        # Chunks merge in another order, yet the statistics (quantiles too) are the same.
        for name, stats in statistics["iterative"].items():
            got = statistics[executor][name]
            assert got["quantiles"] == stats["quantiles"], (executor, name)
            assert got["mean"] == pytest.approx(stats["mean"], rel=1e-12, abs=1e-12)


def test_feature_statistics_merge_in_any_order_and_sample_uniformly():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(5000, 3)).astype(np.float32)
    keys = particle_keys(rng.integers(0, 2**63, size=1000, dtype=np.uint64), np.full(1000, 5))
    parts = [
        FeatureStatistics.from_particles(features[i : i + 700], keys[i : i + 700], capacity=1000)
        for i in range(0, 5000, 700)
    ]
    forward = sum(parts[1:], parts[0]).summary("abc")
    backward = sum(parts[-2::-1], parts[-1]).summary("abc")
    for name in "abc":  # the sample is the same; float sums agree to rounding
        assert forward[name]["quantiles"] == backward[name]["quantiles"]
        assert forward[name]["std"] == pytest.approx(backward[name]["std"], rel=1e-12)
    assert forward["a"]["count"] == 5000
    assert forward["b"]["mean"] == pytest.approx(float(features[:, 1].astype(float).mean()))
    assert forward["c"]["max"] == pytest.approx(float(features[:, 2].max()))
    # The 1000-particle sample's median is close to the full one (a uniform sample).
    median = float(np.median(features[:, 0]))
    assert abs(forward["a"]["quantiles"]["0.5"] - median) < 0.1
    assert len(set(keys.tolist())) == len(keys)  # distinct keys per particle


def test_hardest_first_order_is_the_lexsort_by_jet_then_descending_pt():
    rng = np.random.default_rng(3)
    n = 20_000
    jet = np.sort(rng.integers(0, 500, n))
    jet[::7] = rng.integers(0, 500, len(jet[::7]))  # links not grouped by jet everywhere
    # ties, both zeros, negatives, infinities and NaN: every case a float sort orders
    pt = rng.choice(np.array([0.5, 1.0, 1.0, 2.5, 0.0, -0.0, -3.0, np.inf, -np.inf, np.nan]), n)
    pt = np.where(rng.random(n) < 0.5, rng.exponential(5.0, n), pt).astype(np.float32)
    order = hardest_first_order(jet, pt)
    assert np.array_equal(order, np.lexsort((-pt, jet)))
    # pT sorted within each jet (NaN last), jets in ascending order
    assert np.all(np.diff(jet[order]) >= 0)


@needs_cms
def test_real_pfnano_file_matches_hand_computed_features(tmp_path):
    manifest = make_skim([CMS / "pfnano.root"], tmp_path / "skim")
    assert manifest["counts"]["cms"]["jets_written"] == 24  # no FatJet_nConstituents: by jetIdx
    jets = _read_all(tmp_path / "skim")
    assert set(jets.label.tolist()) == {-1}  # data-like: no truth label

    first = jets[(jets.event == jets.event[0]) & (jets.jet_index == 0)][0]
    events = uproot.open(CMS / "pfnano.root")["Events"].arrays(entry_stop=10)
    event = events[ak.to_numpy(events.event) == first.event][0]
    link = event.FatJetPFCands_jetIdx == 0
    index = ak.to_numpy(event.FatJetPFCands_pFCandsIdx[link])
    pt = ak.to_numpy(event.PFCands_pt)[index]
    order = np.argsort(-pt, kind="stable")[:3]
    jet_pt, jet_eta, jet_phi = (float(event[f"FatJet_{k}"][0]) for k in ("pt", "eta", "phi"))
    assert len(first.particles) == len(index)
    for row, cand in enumerate(index[order]):
        eta, phi = float(event.PFCands_eta[cand]), float(event.PFCands_phi[cand])
        dphi = (phi - jet_phi + math.pi) % (2 * math.pi) - math.pi
        got = dict(zip(PART17.names, first.particles[row].tolist(), strict=True))
        assert got["part_pt_log"] == pytest.approx(math.log(pt[order[row]]), rel=1e-5)
        assert got["part_logptrel"] == pytest.approx(math.log(pt[order[row]] / jet_pt), rel=1e-5)
        assert got["part_dphi"] == pytest.approx(dphi, abs=1e-5)
        assert got["part_deltaR"] == pytest.approx(math.hypot(eta - jet_eta, dphi), abs=1e-5)
        assert got["part_charge"] == float(event.PFCands_charge[cand])
        assert got["part_d0"] == pytest.approx(math.tanh(float(event.PFCands_d0[cand])), abs=1e-6)


@needs_cms
@pytest.mark.parametrize("executor", ["iterative", "futures", "dask"])
def test_file_without_constituents_fails_and_writes_nothing(tmp_path, capfd, executor):
    out = tmp_path / "skim"
    code = main(
        ["skim", str(CMS / "nano_dy.root"), "--out", str(out), "--no-progress",
         "--executor", executor, "--workers", "2"]
    )  # fmt: skip
    message = capfd.readouterr().err  # what the terminal shows, worker processes included
    assert code == 2
    assert "Traceback" not in message  # workers' tracebacks (coffea, distributed) are held back
    assert "no jet constituents" in message and "nano_dy.root" in message
    assert "FatJetPFCands_{jetIdx,pFCandsIdx}" in message
    assert "FatJetPFCand_{jetIdx,pfCandIdx}" in message
    assert not list(out.rglob("*.parquet")) and not (out / "manifest.json").exists()


def test_central_v15_naming_fills_missing_impact_parameters_and_says_so(tmp_path):
    make_sample(tmp_path / "gen", classes=("Tbqq",), jets=24, naming="nanoaod-v15", workers=1)
    manifest = make_skim([tmp_path / "gen"], tmp_path / "skim")
    assert manifest["counts"]["gen"]["jets_written"] == 24
    record = manifest["missing_inputs"]["impact_parameters"]
    assert record["replaced_by"].startswith("zeros") and len(record["files"]) == 1
    assert manifest["missing_inputs"]["charge"]["replaced_by"].startswith("derived from pdgId")
    jets = _read_all(tmp_path / "skim")
    for name in ("part_d0", "part_d0err", "part_dz", "part_dzerr"):
        assert ak.all(_column(jets, name) == 0)
    charged = _column(jets, "part_isChargedHadron") == 1
    assert ak.all(abs(_column(jets, "part_charge")[charged]) == 1)

    with pytest.raises(HepmpmError, match="no impact parameters"):
        make_skim([tmp_path / "gen"], tmp_path / "strict", require_impact_parameters=True)
    assert not (tmp_path / "strict" / "manifest.json").exists()


def test_truncated_root_file_is_a_clear_error(sim_sample, tmp_path):
    source = sorted(sim_sample.glob("*.root"))[0]
    broken = tmp_path / "broken" / "half.root"
    broken.parent.mkdir()
    data = source.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(HepmpmError, match=r"half\.root: cannot be read as a ROOT file"):
        make_skim([broken], tmp_path / "skim")
    assert not (tmp_path / "skim").exists() or not any((tmp_path / "skim").iterdir())


def test_nan_and_missing_constituents_are_counted_skips(sim_sample, tmp_path):
    source = sorted(sim_sample.glob("*Wqq*.root"))[0]

    def damage(branches):
        pt = branches["PFCands_pt"]
        flat = ak.to_numpy(ak.flatten(pt)).copy()
        flat[0] = np.nan  # a particle of the first event's jet
        branches["PFCands_pt"] = ak.unflatten(flat, ak.num(pt))
        for name in ("FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx"):
            links = branches[name]  # the second event's jet loses its constituent links
            branches[name] = ak.concatenate([links[:1], links[1:2, :0], links[2:]])

    damaged = tmp_path / "damaged" / "w.root"
    damaged.parent.mkdir()
    rewrite_events(source, damaged, damage)
    manifest = make_skim([damaged], tmp_path / "skim")
    counts = manifest["counts"]["damaged"]
    assert counts["skipped_non_finite"] == 1
    assert counts["skipped_no_constituents"] == 1
    assert counts["jets_written"] == counts["jets_seen"] - 2


def test_max_particles_keeps_the_hardest(skim_dir, sim_sample, tmp_path):
    full = _read_all(skim_dir)
    make_skim([sim_sample], tmp_path / "capped", selection=JetSelection(max_particles=10))
    capped = _read_all(tmp_path / "capped")
    assert ak.all(capped.n_particles == np.minimum(full.n_particles, 10))
    assert ak.all(capped.particles == full.particles[:, :10])
    counts = json.loads((tmp_path / "capped" / "manifest.json").read_text())["counts"]
    truncated = sum(c["jets_truncated"] for c in counts.values())
    assert truncated == int(ak.sum(full.n_particles > 10)) > 0


def test_rerun_is_skipped_and_other_settings_are_refused(sim_sample, tmp_path):
    files = sorted(sim_sample.glob("*.root"))[:1]
    first = make_skim(files, tmp_path / "skim")
    shard = tmp_path / "skim" / first["shards"][0]["path"]
    mtime = shard.stat().st_mtime_ns
    assert make_skim(files, tmp_path / "skim") == first
    assert shard.stat().st_mtime_ns == mtime
    with pytest.raises(HepmpmError, match="other settings"):
        make_skim(files, tmp_path / "skim", feature_set="mpm7id")


def test_fileset_json_sets_dataset_and_domain(sim_sample, tmp_path):
    files = [str(p) for p in sorted(sim_sample.glob("*.root"))[:2]]
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"collisions": {"files": files, "metadata": {"domain": "data"}}}))
    code = main(["skim", str(fileset), "--out", str(tmp_path / "skim"), "--no-progress",
                 "--feature-set", "mpm7id", "--min-pt", "550"])  # fmt: skip
    assert code == 0
    jets = _read_all(tmp_path / "skim")
    assert set(jets.dataset.tolist()) == {"collisions"} and set(jets.domain.tolist()) == {"data"}
    assert ak.all(jets.jet_pt >= 550) and len(jets.particles[0][0]) == 8
