"""Export: both layouts round-trip (metadata, onnxruntime == torch), quantized variants, errors."""

from __future__ import annotations

import json
import pickle

import awkward as ak
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hepmpm.export import OnnxTagger, export_tagger, quantize_model, read_model_info
from hepmpm.export.random_jets import random_jets
from tagger_models import make_tagger_dir

from hepmpm.cli import main
from hepmpm.errors import HepmpmError
from hepmpm.features import get_feature_set
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.models.store import load_tagger


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    return make_tagger_dir(tmp_path_factory.mktemp("finetune"), config_hash="cfg-1234")


@pytest.fixture(scope="module")
def exported(tagger_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return {
        layout: export_tagger(tagger_dir, out / f"{layout}.onnx", layout=layout)
        for layout in ("hepmpm", "cmssw")
    }


def torch_probs(tagger_dir, features, mask):
    tagger, _ = load_tagger(tagger_dir)
    with torch.no_grad():
        logits, embedding = tagger(torch.from_numpy(features), torch.from_numpy(mask) > 0.5)
    return torch.softmax(logits, -1).numpy(), embedding.numpy()


def test_hepmpm_layout_round_trip(tagger_dir, exported):
    report = exported["hepmpm"]
    assert report.worst < 1e-5 and len(report.max_abs_diff) == 9
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pf_features", "pf_mask"]
    assert [o.name for o in session.get_outputs()] == ["probs", "embedding"]
    assert session.get_inputs()[0].shape == ["N", "P", 17]  # N and P dynamic
    features, mask = random_jets(get_feature_set("part17"), 33, 57, seed=99)
    probs, embedding = session.run(None, {"pf_features": features, "pf_mask": mask})
    expected, expected_embedding = torch_probs(tagger_dir, features, mask)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    np.testing.assert_allclose(embedding, expected_embedding, atol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert probs.std() > 0.01  # not a constant model: the comparison means something


def test_pair_bias_exports(tmp_path):
    """A backbone with ParT's pair features (ln ΔR, kT, z, m² through an MLP): the same scores
    in onnxruntime as in torch, for any jet length (ONNX's dynamic P)."""
    from hepmpm.models.backbone import BACKBONE_SIZES

    config = BACKBONE_SIZES["tiny"].model_copy(update={"pair_bias": True, "pair_dim": 8})
    tagger_dir = make_tagger_dir(tmp_path / "ft", backbone=config)
    report = export_tagger(tagger_dir, tmp_path / "pairs.onnx")
    assert report.worst < 1e-5
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for particles in (9, 71):
        features, mask = random_jets(get_feature_set("part17"), 16, particles, seed=particles)
        probs, _ = session.run(None, {"pf_features": features, "pf_mask": mask})
        np.testing.assert_allclose(probs, torch_probs(tagger_dir, features, mask)[0], atol=1e-5)


def test_standardised_inputs_export(tmp_path):
    """The input standardisation's statistics are buffers of the embedding: in the ONNX graph."""
    from hepmpm.models.backbone import BACKBONE_SIZES

    config = BACKBONE_SIZES["tiny"].model_copy(update={"standardise_inputs": True})

    def fit(tagger):
        n = tagger.backbone.embed.normalise.n_continuous
        sample = torch.randn(500, n, generator=torch.Generator().manual_seed(3)) * 0.02 + 0.5
        tagger.backbone.embed.set_input_statistics(sample)

    tagger_dir = make_tagger_dir(tmp_path / "ft", backbone=config, edit=fit)
    report = export_tagger(tagger_dir, tmp_path / "standardised.onnx")
    assert report.worst < 1e-5
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    features, mask = random_jets(get_feature_set("part17"), 16, 40, seed=5)
    probs, _ = session.run(None, {"pf_features": features, "pf_mask": mask})
    np.testing.assert_allclose(probs, torch_probs(tagger_dir, features, mask)[0], atol=1e-5)
    assert load_tagger(tagger_dir)[0].backbone.embed.input_std.max() < 0.05  # fitted, saved


def test_metadata(exported, tagger_dir):
    model = onnx.load(str(exported["hepmpm"].path))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["hepmpm.class_names"]) == list(CLASS_NAMES)
    assert props["hepmpm.feature_set"] == "part17"
    assert json.loads(props["hepmpm.features"]) == list(get_feature_set("part17").names)
    assert props["hepmpm.config_hash"] == "cfg-1234"
    assert props["hepmpm.layout"] == "hepmpm"
    assert props["hepmpm.version"]
    assert model.opset_import[0].version >= 17
    info = read_model_info(exported["cmssw"].path)
    assert info.layout == "cmssw" and info.max_particles == 128


def test_config_hash_falls_back_to_the_record(tmp_path):
    folder = make_tagger_dir(tmp_path / "ft")  # no config_hash in tagger.json
    report = export_tagger(folder, tmp_path / "m.onnx")
    assert report.info.config_hash.startswith("sha256:")


def test_cmssw_layout_and_preprocess_json(tagger_dir, exported):
    report = exported["cmssw"]
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["softmax"]
    assert session.get_inputs()[0].shape == ["N", 17, "P"]
    assert session.get_inputs()[1].shape == ["N", 1, "P"]
    features, mask = random_jets(get_feature_set("part17"), 5, 40, seed=5)
    (probs,) = session.run(
        None, {"pf_features": features.transpose(0, 2, 1).copy(), "pf_mask": mask[:, None, :]}
    )
    np.testing.assert_allclose(probs, torch_probs(tagger_dir, features, mask)[0], atol=1e-5)

    pre = json.loads(report.preprocess_json.read_text())
    assert pre["input_names"] == ["pf_features", "pf_mask"]
    assert pre["output_names"] == [f"prob{c}" for c in CLASS_NAMES]
    group = pre["pf_features"]
    assert group["var_names"] == list(get_feature_set("part17").names)
    assert (group["min_length"], group["max_length"]) == (1, 128)
    info = group["var_infos"]["part_pt_log"]
    assert info["median"] == 0 and info["norm_factor"] == 1 and info["pad"] == 0
    assert info["lower_bound"] <= -1e30 and info["upper_bound"] >= 1e30
    assert pre["pf_mask"]["var_names"] == ["part_mask"]


def test_mpm7id_exports(tmp_path):
    """mpm7id's asinh/log normalisation goes through the exporter."""
    folder = make_tagger_dir(tmp_path / "ft", feature_set="mpm7id")
    report = export_tagger(folder, tmp_path / "m.onnx")
    assert report.worst < 1e-5


def test_failed_validation_leaves_no_file(tagger_dir, tmp_path):
    out = tmp_path / "model.onnx"
    with pytest.raises(HepmpmError, match="onnxruntime disagrees with torch"):
        export_tagger(tagger_dir, out, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_quantized_variants(exported, skim_dir):
    int8 = quantize_model(exported["hepmpm"].path, "int8", data=skim_dir)
    assert int8.path.name == "hepmpm.int8.onnx" and int8.path.is_file()
    assert 0 < int8.max_abs_diff < 0.1
    assert int8.accuracy_float is not None and abs(int8.accuracy_change) < 0.2
    assert read_model_info(int8.path).feature_set == "part17"
    fp16 = quantize_model(exported["cmssw"].path, "fp16")
    assert fp16.source == "random jets" and fp16.accuracy_change is None
    assert 0 < fp16.max_abs_diff < 0.05


def test_onnx_tagger_numpy_awkward_pickle(tagger_dir, exported):
    feature_set = get_feature_set("part17")
    features, mask = random_jets(feature_set, 12, 30, seed=3)
    counts = mask.sum(axis=1).astype(int)
    flat = features[mask > 0]
    expected = torch_probs(tagger_dir, features, mask)[0]
    for report in exported.values():
        tagger = OnnxTagger(report.path, "part17")
        np.testing.assert_allclose(tagger(features, mask), expected, atol=1e-5)
        jagged = ak.unflatten(flat, counts)
        np.testing.assert_allclose(ak.to_numpy(tagger(jagged)), expected, atol=1e-5)
        records = ak.zip(
            {n: ak.unflatten(flat[:, i], counts) for i, n in enumerate(feature_set.names)}
        )
        shuffled = records[list(reversed(feature_set.names))]  # field order does not matter
        np.testing.assert_allclose(ak.to_numpy(tagger(shuffled)), expected, atol=1e-5)
        with pytest.raises(HepmpmError, match="lack part_dphi"):
            tagger(records[list(feature_set.names[:-1])])
        clone = pickle.loads(pickle.dumps(tagger))  # what a Dask worker receives
        assert clone._session is None
        np.testing.assert_allclose(clone(features, mask), expected, atol=1e-5)


def test_model_for_another_feature_set(exported):
    with pytest.raises(HepmpmError, match=r"exported for feature set 'part17'.*'mpm7id'"):
        OnnxTagger(exported["hepmpm"].path, "mpm7id")


def test_corrupt_and_foreign_onnx(tmp_path, exported):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(exported["hepmpm"].path.read_bytes()[:5000])
    with pytest.raises(HepmpmError, match=r"corrupt\.onnx: not a readable ONNX model"):
        OnnxTagger(corrupt)
    model = onnx.load(str(exported["hepmpm"].path))
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    with pytest.raises(HepmpmError, match=r"not a hepmpm tagger; metadata lacks hepmpm\.layout"):
        OnnxTagger(foreign)
    with pytest.raises(HepmpmError, match="does not exist"):
        OnnxTagger(tmp_path / "missing.onnx")


def test_cli_export(tagger_dir, tmp_path, capsys):
    out = tmp_path / "cms" / "model.onnx"
    code = main(["export", str(tagger_dir), "--out", str(out), "--layout", "cmssw",
                 "--quantize", "int8"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "max |Δprob|" in printed and "model.int8.onnx" in printed
    assert (tmp_path / "cms" / "preprocess.json").is_file()
    assert main(["export", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "holds no tagger.json" in capsys.readouterr().err
