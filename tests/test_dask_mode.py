"""coffea's dask mode: ``tag_fatjets`` on ``NanoEventsFactory.from_root(..., mode="dask")``
events and ``OnnxTagger`` on dask-awkward arrays give the eager scores (the ``dask`` extra)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from conftest import CMS, needs_cms
from hepmpm.export import OnnxTagger, export_tagger
from tagger_models import make_tagger_dir

import hepmpm

dak = pytest.importorskip("dask_awkward", reason="the dask extra (dask-awkward) is not installed")

pytestmark = pytest.mark.filterwarnings(
    # NanoAODSchema on real CMS files: collections it would cross-reference are not stored.
    "ignore:Missing cross-reference index:RuntimeWarning",
    "ignore:Branch .* already exists but its values will be replaced:RuntimeWarning",
    "ignore:You have set steps_per_file:RuntimeWarning",  # a small file cut in partitions
)


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> OnnxTagger:
    folder = make_tagger_dir(tmp_path_factory.mktemp("finetune"), seed=3)
    model = export_tagger(folder, tmp_path_factory.mktemp("onnx") / "model.onnx").path
    return OnnxTagger(model, threads=1)


def nano_events(path, mode: str, **options):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode, **options
    ).events()


def files():
    """A real CMS PFNano file (shared/, when present) and a generated one (always)."""
    return [pytest.param("cms", marks=needs_cms), "generated"]


@pytest.fixture
def root_file(request, sim_sample):
    return CMS / "pfnano.root" if request.param == "cms" else sorted(sim_sample.glob("*.root"))[0]


@pytest.mark.parametrize("root_file", files(), indirect=True)
def test_tag_fatjets_in_dask_mode_equals_eager(root_file, tagger):
    eager = hepmpm.tag_fatjets(nano_events(root_file, "eager"), tagger)
    events = nano_events(root_file, "dask", steps_per_file=3)  # several partitions
    assert events.npartitions > 1
    scores = hepmpm.tag_fatjets(events, tagger)
    assert isinstance(scores, dak.Array)
    # Planning the graph reads nothing, and the model inputs' branches are all it reads.
    columns = set(next(iter(dak.necessary_columns(scores).values())))
    assert {"FatJet_pt", "FatJetPFCands_jetIdx", "PFCands_pdgId"} <= columns
    read = {"FatJet", "FatJetPFCands", "PFCands", "nFatJet", "nFatJetPFCands", "nPFCands"}
    assert {c.split("_")[0] for c in columns} == read
    computed = scores.compute()
    assert ak.to_list(ak.num(computed)) == ak.to_list(ak.num(eager))
    flat, expected = ak.to_numpy(ak.flatten(computed)), ak.to_numpy(ak.flatten(eager))
    assert (~np.isnan(expected)).any()
    np.testing.assert_array_equal(flat, expected)  # NaN where untagged, in both


def test_onnx_tagger_takes_dask_awkward_particles(tagger):
    rng = np.random.default_rng(4)
    counts = rng.integers(1, 60, size=40)
    flat = rng.normal(size=(counts.sum(), tagger.feature_set.n_features)).astype(np.float32)
    flat[:, 0] = np.abs(flat[:, 0])
    particles = ak.unflatten(flat, counts)  # [jets, var, F]
    eager = tagger(particles)
    lazy = tagger(dak.from_awkward(particles, npartitions=3))
    assert isinstance(lazy, dak.Array)
    np.testing.assert_array_equal(ak.to_numpy(lazy.compute()), ak.to_numpy(eager))
    np.testing.assert_array_equal(ak.to_numpy(eager), tagger.tag_flat(flat, counts))
