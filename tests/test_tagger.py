"""TaggerProcessor: no train/inference skew, executors agree, real CMS files, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import CMS, needs_cms
from hepmpm.export import export_tagger
from hepmpm.processors.tagger import TaggerProcessor
from tagger_models import make_tagger_dir

from hepmpm.cli import main
from hepmpm.data.loader import pad_particles
from hepmpm.data.shards import particle_features
from hepmpm.errors import HepmpmError
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.models.store import load_tagger
from hepmpm.tag import TagRequest, read_hists, run_tag

KEY = ["run", "luminosityBlock", "event", "jet_index"]
SCORES = [f"score_{c}" for c in CLASS_NAMES]


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return make_tagger_dir(tmp_path_factory.mktemp("finetune"), seed=3)


@pytest.fixture(scope="module")
def model(tagger_dir, tmp_path_factory):
    return export_tagger(tagger_dir, tmp_path_factory.mktemp("onnx") / "model.onnx").path


def read_scores(out: Path) -> dict[str, np.ndarray]:
    files = sorted((out / "scores").rglob("*.parquet"))
    assert files
    table = pa.concat_tables([pq.read_table(f) for f in files])
    columns = {name: table[name].to_numpy() for name in [*KEY, *SCORES, "label", "n_particles"]}
    order = np.lexsort([columns[k] for k in reversed(KEY)])
    return {k: v[order] for k, v in columns.items()}


@pytest.fixture(scope="module")
def iterative_run(model, sim_sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("tag_iterative")
    summary, hists = run_tag(
        TagRequest(model=model, inputs=[sim_sample], out=out), show_progress=False
    )
    return out, summary, hists


def test_scores_equal_torch_on_skim_shards(iterative_run, skim_dir, tagger_dir):
    """Same jets (by run, lumi, event, jet index), same scores: the skim and the tagger build
    the model inputs with the same code."""
    out, _, _ = iterative_run
    tagged = read_scores(out)
    manifest = json.loads((skim_dir / "manifest.json").read_text())
    tagger, _ = load_tagger(tagger_dir)
    keys, probs, counts = [], [], []
    for shard in manifest["shards"]:
        table = pq.read_table(skim_dir / shard["path"])
        flat, offsets = particle_features(table["particles"])
        features, mask = pad_particles(flat, offsets[:-1], np.diff(offsets))
        with torch.no_grad():
            logits, _ = tagger(torch.from_numpy(features), torch.from_numpy(mask))
        probs.append(torch.softmax(logits, -1).numpy())
        keys.append(np.stack([table[k].to_numpy().astype(np.int64) for k in KEY], axis=1))
        counts.append(np.diff(offsets))
    keys, probs, counts = np.concatenate(keys), np.concatenate(probs), np.concatenate(counts)
    order = np.lexsort(keys.T[::-1])
    tagged_keys = np.stack([tagged[k].astype(np.int64) for k in KEY], axis=1)
    assert len(tagged_keys) == len(keys) > 400
    np.testing.assert_array_equal(tagged_keys, keys[order])
    np.testing.assert_array_equal(tagged["n_particles"], counts[order])
    onnx_probs = np.stack([tagged[s] for s in SCORES], axis=1)
    np.testing.assert_allclose(onnx_probs, probs[order], atol=2e-5)
    assert onnx_probs.std() > 0.01


def test_histograms_and_summary(iterative_run):
    out, summary, hists = iterative_run
    jets = sum(c["jets_tagged"] for c in summary["counts"].values())
    score = hists["score"]
    assert list(score.axes["cls"]) == list(CLASS_NAMES)
    for name in CLASS_NAMES:
        assert score[{"cls": name}].sum(flow=True) == jets  # every jet, once per output
    assert hists["score_vs_mass"].sum(flow=True) == jets * len(CLASS_NAMES)
    back = read_hists(out / "hists.json")
    np.testing.assert_array_equal(back["score"].values(), score.values())
    written = json.loads((out / "summary.json").read_text())
    assert written["feature_set"] == "part17" and written["class_names"] == list(CLASS_NAMES)


@pytest.mark.parametrize("executor", ["futures", "dask"])
def test_parallel_executors_give_identical_scores(
    iterative_run, model, sim_sample, tmp_path, executor
):
    """Two worker processes (a process pool, or a distributed.LocalCluster): same scores."""
    out, _, _ = iterative_run
    run_tag(
        TagRequest(
            model=model, inputs=[sim_sample], out=tmp_path, executor=executor, workers=2,
            chunksize=200,
        ),
        show_progress=False,
    )  # fmt: skip
    parallel, iterative = read_scores(tmp_path), read_scores(out)
    for name in [*KEY, *SCORES]:
        np.testing.assert_array_equal(parallel[name], iterative[name])


@needs_cms
def test_real_pfnano_file_is_tagged(model, tmp_path):
    summary, _ = run_tag(
        TagRequest(model=model, inputs=[CMS / "pfnano.root"], out=tmp_path), show_progress=False
    )
    (counts,) = summary["counts"].values()
    assert counts["jets_tagged"] > 0
    scores = read_scores(tmp_path)
    assert len(scores["event"]) == counts["jets_tagged"]
    total = np.stack([scores[s] for s in SCORES], axis=1).sum(axis=1)
    np.testing.assert_allclose(total, 1, atol=1e-5)
    assert (scores["label"] == -1).all()  # real data: no truth label


@needs_cms
def test_file_without_constituents_is_a_clear_error(model, tmp_path):
    with pytest.raises(
        HepmpmError, match=r"nano_dy\.root: no jet constituents; looked for PFCands"
    ):
        run_tag(
            TagRequest(model=model, inputs=[CMS / "nano_dy.root"], out=tmp_path / "o"),
            show_progress=False,
        )
    assert not (tmp_path / "o").exists()  # the failed run left nothing behind


def test_model_for_another_feature_set_is_refused(model):
    with pytest.raises(HepmpmError, match="exported for feature set 'part17'"):
        TaggerProcessor(model, feature_set="mpm7id")


def test_corrupt_model_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not an onnx file" * 50)
    with pytest.raises(HepmpmError, match="not a readable ONNX model"):
        TaggerProcessor(bad)


def test_cli_tag(model, sim_sample, tmp_path, capsys):
    files = sorted(sim_sample.glob("*.root"))[:1]
    code = main(["tag", "--model", str(model), str(files[0]), "--out", str(tmp_path / "o"),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "tagged" in printed and "mean score: QCD" in printed
    assert (tmp_path / "o" / "hists.json").is_file()
    again = main(["tag", "--model", str(model), str(files[0]), "--out", str(tmp_path / "o")])
    assert again == 2 and "already holds a tagging run" in capsys.readouterr().err


def test_multiplicity_batches_equal_one_padded_call(model):
    """Jets sorted by particle count, run in small batches padded to their own longest jet
    (rounded up to whole vector blocks, ``PAD_MULTIPLE``) and put back in order, score exactly
    as one call padded to 128 slots does, jet by jet, bit for bit. Padded to the jet's own
    length instead, float32 reductions end in a tail loop that rounds differently: the check
    that the rounding up is what makes the scores exact."""
    from hepmpm.export import OnnxTagger
    from hepmpm.export.random_jets import random_jets
    from hepmpm.export.runtime import make_session, run_probs

    from hepmpm.features import get_feature_set

    features, mask = random_jets(get_feature_set("part17"), 300, 128, seed=5, min_particles=1)
    counts = mask.sum(axis=1).astype(np.int64)
    session = make_session(model, threads=1, providers=["CPUExecutionProvider"])
    reference = run_probs(session, features, mask, "hepmpm")  # [300, C], one call, P = 128

    tagger = OnnxTagger(model, threads=1, batch_size=16)
    flat = features[mask > 0]  # [n_particles, F], jet after jet
    bucketed = tagger.tag_flat(flat, counts)
    np.testing.assert_array_equal(bucketed, reference)
    np.testing.assert_array_equal(tagger(features, mask), reference)
    # At each jet's own length (not whole blocks) the scores are only close.
    own_length = np.concatenate(
        [run_probs(session, features[i : i + 1, : counts[i]], mask[i : i + 1, : counts[i]],
                   "hepmpm") for i in range(len(counts))]
    )  # fmt: skip
    assert 0 < np.abs(own_length - reference).max() < 1e-5
    # jets longer than the tagger's cap keep their hardest particles, as in the awkward path
    capped = OnnxTagger(model, threads=1, batch_size=16, max_particles=40)
    np.testing.assert_array_equal(
        capped.tag_flat(flat, counts),
        run_probs(session, features[:, :40], mask[:, :40], "hepmpm"),
    )
    with pytest.raises(HepmpmError, match="add up to"):
        tagger.tag_flat(flat, counts + 1)


def test_tag_fatjets_matches_the_processor_jet_by_jet(model, iterative_run, sim_sample):
    """``hepmpm.tag_fatjets`` on a file's own events: scores aligned with events.FatJet, equal
    to the TaggerProcessor's for the jets it tagged, NaN for the others."""
    import awkward as ak
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema
    from hepmpm.export import OnnxTagger

    import hepmpm

    out, _, _ = iterative_run
    tagged = read_scores(out)
    path = sorted(sim_sample.glob("*.root"))[0]
    events = NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager"
    ).events()
    scores = hepmpm.tag_fatjets(events, OnnxTagger(model))
    assert ak.all(ak.num(scores) == ak.num(events.FatJet))
    assert ak.to_numpy(scores[0, 0]).shape == (len(CLASS_NAMES),)
    events["FatJet", "hepmpm_Tbqq"] = scores[..., CLASS_NAMES.index("Tbqq")]
    flat = ak.to_numpy(ak.flatten(scores))  # [n_jets, C]
    keys = np.stack(
        [
            ak.to_numpy(ak.flatten(ak.broadcast_arrays(events[k], events.FatJet.pt)[0]))
            for k in KEY[:3]
        ]
        + [ak.to_numpy(ak.flatten(ak.local_index(events.FatJet.pt)))],
        axis=1,
    ).astype(np.int64)
    by_key = {tuple(k): i for i, k in enumerate(keys)}
    tagged_keys = np.stack([tagged[k].astype(np.int64) for k in KEY], axis=1)
    rows = [by_key[tuple(k)] for k in tagged_keys if tuple(k) in by_key]
    assert len(rows) > 20
    in_file = np.array([tuple(k) in by_key for k in tagged_keys])
    reference = np.stack([tagged[s] for s in SCORES], axis=1)[in_file]
    np.testing.assert_array_equal(flat[rows], reference)  # the same model step, bit for bit
    untagged = np.setdiff1d(np.arange(len(flat)), rows)
    assert np.isnan(flat[untagged]).all()
    np.testing.assert_array_equal(
        ak.to_numpy(ak.flatten(events.FatJet.hepmpm_Tbqq))[rows], flat[rows, 8]
    )
