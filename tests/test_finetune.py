"""Fine-tuning (frozen / finetune / scratch), tagger metrics against scikit-learn, the CLI.

A module-scoped sample of QCD, W and top jets (real Pythia 8, skimmed) and a tiny backbone
pre-trained on it (regression + particle-id targets, no tokenizer) serve every training test.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import generated_skim
from sklearn.metrics import confusion_matrix, roc_auc_score

from hepmpm.cli import main
from hepmpm.errors import HepmpmError
from hepmpm.evaluation.metrics import background_rejection, classification_metrics
from hepmpm.evaluation.scoring import evaluate_tagger
from hepmpm.features import feature_set_record, get_feature_set
from hepmpm.models.store import load_backbone, load_tagger
from hepmpm.training.finetune import FinetuneModule, load_finetune_config, run_finetune
from hepmpm.training.pretrain import run_pretrain
from hepmpm.training.runs import last_checkpoint

CLASSES = ("QCD", "Wqq", "Tbqq")  # jet masses ~ tens of GeV, 80 GeV, 173 GeV: separable
# Short jets and small batches keep each step cheap on a shared CPU.
FAST = [
    "data.pad_to=48",
    "data.batch_size=32",
    "trainer.val_every_steps=25",
    "trainer.val_batches=2",
    "trainer.log_every_steps=5",
    "trainer.cpu_threads=1",  # a tiny model: more threads only contend with other processes
]


@pytest.fixture(scope="module")
def skim(tmp_path_factory):
    """150 jets of each of QCD, Wqq, Tbqq (part17 skim; ~80/10/10 train/val/test)."""
    return generated_skim(tmp_path_factory, "ft", CLASSES, jets=150, seed=11)


@pytest.fixture(scope="module")
def pretrained(skim, tmp_path_factory):
    """A tiny backbone pre-trained for 60 steps (regression + id targets: no tokenizer)."""
    out = tmp_path_factory.mktemp("ft_pretrain") / "run"
    run_pretrain(
        "tiny",
        skim,
        out,
        overrides=[*FAST, "mpm.targets={regression: 1.0, id: 1.0}", "trainer.max_steps=60"],
        show_progress=False,
    )
    return out


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- fine-tuning


def test_finetune_beats_chance(skim, pretrained, tmp_path):
    out = tmp_path / "ft"
    metrics = run_finetune(
        "tiny", skim, out, backbone_dir=pretrained, mode="finetune", labels=180,
        overrides=[*FAST, "trainer.max_steps=150"], show_progress=False,
    )  # fmt: skip
    assert metrics["train_jets"] == 180 and metrics["steps"] == 150
    test = metrics["test"]
    assert test["class_names"] == list(CLASSES)
    assert test["n_jets"] >= 30
    # Chance is 1/3 for three balanced-ish classes; measured 0.62-0.71 over seeds 0-3 (a
    # chance classifier gets >= 25 of 45 right with probability ~1e-3).
    assert test["accuracy"] > 0.55, test
    assert test["macro_auc"] > 0.7, test
    assert test["per_class"]["Tbqq"]["auc_vs_qcd"] > 0.7, test
    # The folder: tagger + record in the export format, metrics.json as returned.
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    tagger, record = load_tagger(out, get_feature_set("part17"))
    assert record["class_names"] == list(CLASSES) and record["labels"] == [0, 7, 8]
    assert record["mode"] == "finetune" and record["config"]["labels"] == 180
    # The saved tagger scores the test split exactly as the run reported.
    again = evaluate_tagger(tagger, skim, record["labels"])
    assert again["accuracy"] == test["accuracy"] and again["macro_auc"] == test["macro_auc"]
    # The backbone was trained (at a fraction of the head's rate), not left as pre-trained.
    assert not _same(_state(tagger.backbone), _state(load_backbone(pretrained)))
    # A finished folder is not silently overwritten.
    with pytest.raises(HepmpmError, match="already holds a fine-tuning run; add --resume"):
        run_finetune("tiny", skim, out, backbone_dir=pretrained, overrides=FAST)


def test_frozen_leaves_backbone_bit_identical_and_resumes(skim, pretrained, tmp_path):
    out = tmp_path / "frozen"
    overrides = [*FAST, "trainer.max_steps=12", "trainer.val_every_steps=6"]
    first = run_finetune(
        "tiny", skim, out, backbone_dir=pretrained, mode="frozen", overrides=overrides,
        show_progress=False,
    )  # fmt: skip
    tagger, record = load_tagger(out)
    assert record["mode"] == "frozen" and record["trainable_parameters"] < record["parameters"]
    assert _same(_state(tagger.backbone), _state(load_backbone(pretrained)))
    # The head did train.
    assert first["train"]["train/loss"] > 0
    # --resume of a finished run: restores the last checkpoint, trains nothing more.
    resumed = run_finetune(
        "tiny", skim, out, backbone_dir=pretrained, mode="frozen", overrides=overrides,
        resume=True, show_progress=False,
    )  # fmt: skip
    assert resumed["steps"] == first["steps"] == 12
    assert resumed["test"]["accuracy"] == first["test"]["accuracy"]
    # ... but not with another mode.
    with pytest.raises(HepmpmError, match="mode = 'frozen'"):
        run_finetune(
            "tiny", skim, out, backbone_dir=pretrained, mode="finetune", overrides=overrides,
            resume=True,
        )  # fmt: skip


def test_scratch_ignores_the_backbone(skim, pretrained, tmp_path):
    overrides = [*FAST, "trainer.max_steps=4", "trainer.val_every_steps=4"]
    run_finetune(
        "tiny", skim, tmp_path / "with", backbone_dir=pretrained, mode="scratch",
        overrides=overrides, seed=3, show_progress=False,
    )  # fmt: skip
    # The same run from a config object (as studies loop over them), without a backbone.
    config = load_finetune_config("tiny", overrides, mode="scratch", seed=3)
    run_finetune(config, skim, tmp_path / "without", show_progress=False)
    with_backbone, record = load_tagger(tmp_path / "with")
    without, _ = load_tagger(tmp_path / "without")
    assert record["pretrained"] is None
    assert _same(_state(with_backbone), _state(without))
    assert not _same(_state(with_backbone.backbone), _state(load_backbone(pretrained)))


def test_architecture_comes_from_the_backbone(skim, pretrained, tmp_path):
    """The `small` fine-tuning config on a `tiny` backbone: the backbone's architecture wins."""
    out = tmp_path / "arch"
    overrides = [*FAST, "trainer.max_steps=2", "trainer.val_every_steps=2", "backbone.dropout=0.2"]
    run_finetune("small", skim, out, backbone_dir=pretrained, overrides=overrides,
                 show_progress=False)  # fmt: skip
    tagger, record = load_tagger(out)
    assert tagger.backbone.config.architecture() == load_backbone(pretrained).config.architecture()
    assert record["config"]["backbone"]["dropout"] == 0.2


def test_catchup_holds_the_backbone_then_moves_it(skim, pretrained, tmp_path):
    hold = 6
    overrides = [
        *FAST, f"head_warmup_steps={hold}", "catchup_steps=4", "evaluate=last",
        "optimizer.warmup_steps=2",
    ]  # fmt: skip
    config = load_finetune_config("tiny", overrides, mode="finetune")
    module = FinetuneModule("part17", config.model_dump(), [0, 7, 8])
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    factors = [[f(step) for f in scheduler.lr_lambdas] for step in range(14)]
    head, backbone = factors[0][0], [row[-1] for row in factors]  # head first, backbone last
    assert head > 0 and backbone[:hold] == [0.0] * hold
    ramp = [b / row[0] for b, row in zip(backbone[hold:], factors[hold:], strict=True)]
    assert np.allclose(ramp[:4], [0.25, 0.5, 0.75, 1.0]) and np.allclose(ramp[4:], 1.0)
    # In a run: bit-identical backbone after `hold` steps, moved after more.
    start = _state(load_backbone(pretrained))
    for steps, moved in ((hold, False), (hold + 4, True)):
        out = tmp_path / f"steps{steps}"
        run_finetune(
            "tiny", skim, out, backbone_dir=pretrained, mode="finetune",
            overrides=[*overrides, f"trainer.max_steps={steps}"], show_progress=False,
        )  # fmt: skip
        assert _same(_state(load_tagger(out)[0].backbone), start) is not moved


@pytest.mark.parametrize("mode", ["finetune", "scratch"])
def test_layer_lr_decay_lowers_the_rate_block_by_block(mode):
    overrides = ["optimizer.lr=1.0e-3", "backbone_lr_ratio=0.1", "layer_lr_decay=0.5"]
    config = load_finetune_config("tiny", overrides, mode=mode)
    module = FinetuneModule("part17", config.model_dump(), [0, 7, 8])
    optimizer = module.configure_optimizers()["optimizer"]
    # initial_lr: the base rate (the scheduler has already scaled lr by step 0's warm-up)
    rate = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    tagger = module.tagger
    assert len(rate) == sum(1 for _ in tagger.parameters())  # each parameter in one group
    assert {rate[id(p)] for p in tagger.head.parameters()} == {1.0e-3}
    depth = tagger.backbone.config.depth
    # tiny: 2 blocks; finetune: top block and final norm at 1e-4, then x0.5 per block below
    expected = {"encoder.blocks.1.": 1.0e-4, "encoder.norm.": 1.0e-4,
                "encoder.blocks.0.": 5.0e-5, "embed.": 2.5e-5, "registers": 2.5e-5}  # fmt: skip
    assert depth == 2
    for name, p in tagger.backbone.named_parameters():
        want = next(v for k, v in expected.items() if name.startswith(k))
        assert rate[id(p)] == pytest.approx(want if mode == "finetune" else 1.0e-3), name
        assert decay[id(p)] == (config.optimizer.weight_decay if p.ndim >= 2 and
                                "categorical" not in name else 0.0), name  # fmt: skip


def test_input_statistics_are_fitted_once_and_travel_with_the_backbone(skim, tmp_path):
    """Pre-training (and the random-init control, and scratch) fit the input standardisation
    from the skim's val jets; fine-tuning from a backbone keeps the backbone's."""
    from hepmpm.training.pretrain import save_random_backbone

    standardise = "backbone.standardise_inputs=true"
    pre = tmp_path / "pre"
    run_pretrain("tiny", skim, pre, show_progress=False, overrides=[
        *FAST, "mpm.targets={regression: 1.0, id: 1.0}", standardise, "trainer.max_steps=2",
    ])  # fmt: skip
    fitted = load_backbone(pre).embed
    assert not fitted.needs_statistics and fitted.input_std.min() < 0.05  # impact parameters
    random = load_backbone(save_random_backbone("tiny", skim, tmp_path / "random",
                                                overrides=[*FAST, standardise])).embed  # fmt: skip
    assert torch.equal(random.input_std, fitted.input_std)  # the same jets, the same statistics
    two_steps = [*FAST, "trainer.max_steps=2", "trainer.val_every_steps=2"]
    run_finetune("tiny", skim, tmp_path / "ft", backbone_dir=pre, mode="finetune",
                 overrides=two_steps, show_progress=False)  # fmt: skip
    kept = load_tagger(tmp_path / "ft")[0].backbone.embed
    assert torch.equal(kept.input_mean, fitted.input_mean)
    assert torch.equal(kept.input_std, fitted.input_std)
    run_finetune("tiny", skim, tmp_path / "scratch", mode="scratch",
                 overrides=[*two_steps, standardise], show_progress=False)  # fmt: skip
    assert not load_tagger(tmp_path / "scratch")[0].backbone.embed.needs_statistics


def test_best_validation_weights_are_tested_and_saved(skim, tmp_path):
    out = tmp_path / "best"
    overrides = [*FAST, "trainer.max_steps=60", "trainer.val_every_steps=10", "optimizer.lr=0.02"]
    overrides.append("early_stopping_patience=2")
    metrics = run_finetune(
        "tiny", skim, out, mode="scratch", overrides=overrides, show_progress=False
    )
    rows = list(csv.DictReader((out / "logs" / "version_0" / "metrics.csv").open()))
    val = [(int(r["step"]), float(r["val/loss"])) for r in rows if r.get("val/loss")]
    best_step = min(val, key=lambda v: v[1])[0]
    # Lightning logs validation at step s - 1 for the checkpoint saved at global step s.
    assert metrics["best_step"] == best_step + 1
    if best_step + 1 < 60:  # stopped early: at most `patience` validations past the best
        assert metrics["steps"] <= metrics["best_step"] + 2 * 10
    checkpoint = torch.load(out / "checkpoints" / "best.ckpt", weights_only=True)
    tagger, _ = load_tagger(out)
    saved = {f"tagger.{k}": v for k, v in _state(tagger).items()}
    assert _same(saved, {k: checkpoint["state_dict"][k] for k in saved})
    again = evaluate_tagger(tagger, skim, [0, 7, 8])
    assert again["accuracy"] == metrics["test"]["accuracy"]


def test_online_probe_is_logged_and_rises(skim, tmp_path):
    """The joint class target on the probe's classes must lift the probe above its random
    twin, which shows the probe reads the backbone being trained."""
    out = tmp_path / "probe"
    run_pretrain(
        "tiny", skim, out,
        overrides=[
            *FAST, "mpm.targets={regression: 1.0, class: 3.0}", f"probe.skim={skim}",
            "probe.labels=90", "probe.score_jets=24", "trainer.max_steps=80",
            "trainer.val_every_steps=40",
        ],
        show_progress=False,
    )  # fmt: skip
    rows = list(csv.DictReader((out / "logs" / "version_0" / "metrics.csv").open()))
    probes = [r for r in rows if r.get("probe/acc")]
    assert len(probes) == 2
    random = {float(r["probe/acc_random"]) for r in probes}
    assert len(random) == 1  # the twins are probed once
    assert float(probes[-1]["probe/gain"]) > 0.05
    # The reference is the mean of three random draws (probe.random_draws), kept for resuming.
    checkpoint = torch.load(last_checkpoint(out), map_location="cpu", weights_only=True)
    (state,) = [v for k, v in checkpoint["callbacks"].items() if "OnlineProbe" in k]
    draws = state["random_accuracies"]
    assert len(draws) == 3 and np.isclose(np.mean(draws), random.pop())
    assert np.isclose(float(probes[-1]["probe/acc_random_std"]), np.std(draws, ddof=1))


# ---------------------------------------------------------------------------- bad input


def test_bad_input_is_a_clear_error(skim, pretrained, tmp_path):
    def finetune(**kw):
        kw.setdefault("backbone_dir", pretrained)
        kw.setdefault("overrides", FAST)
        return run_finetune("tiny", skim, tmp_path / "x", **kw)

    with pytest.raises(HepmpmError, match=r"asked for 100000 jets.*available per class"):
        finetune(labels=100_000)
    with pytest.raises(HepmpmError, match="fewer than the 3 classes"):
        finetune(labels=2)
    with pytest.raises(HepmpmError, match=r"label\(s\) \[1\] not in skim"):
        finetune(classes=["QCD", "Hbb"])
    with pytest.raises(HepmpmError, match=r"needs a pre-trained backbone \(--backbone"):
        finetune(backbone_dir=None, mode="finetune")
    with pytest.raises(HepmpmError, match=r"head\.heads = 3 does not divide"):
        finetune(overrides=[*FAST, "head.heads=3"])
    with pytest.raises(HepmpmError, match=r"head\.heads = 3 does not divide backbone\.dim"):
        finetune(mode="scratch", backbone_dir=None, overrides=[*FAST, "head.heads=3"])
    # A backbone pre-trained on another feature set.
    other = tmp_path / "mpm7id_backbone"
    shutil.copytree(pretrained, other)
    record = json.loads((other / "backbone.json").read_text())
    record["feature_set"] = feature_set_record(get_feature_set("mpm7id"))
    (other / "backbone.json").write_text(json.dumps(record))
    with pytest.raises(HepmpmError, match="feature set 'mpm7id', the data is 'part17'"):
        finetune(backbone_dir=other)
    assert not (tmp_path / "x").exists()  # nothing written by a refused run


def test_cli(skim, pretrained, tmp_path, capsys):
    out = tmp_path / "cli"
    common = ["finetune", "--config", "tiny", "--data", str(skim), "--no-progress"]
    common += [f"--set={o}" for o in [*FAST, "trainer.max_steps=4", "trainer.val_every_steps=4"]]
    rc = main(
        [*common, "--backbone", str(pretrained), "--mode", "frozen", "--labels", "30",
         "--classes", "Wqq,QCD", "--out", str(out)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "30 training jets" in printed and "accuracy" in printed and "macro AUC" in printed
    assert "QCD rejection Wqq" in printed
    assert json.loads((out / "tagger.json").read_text())["class_names"] == ["QCD", "Wqq"]
    rc = main([*common, "--mode", "finetune", "--labels", "30", "--out", str(tmp_path / "y")])
    error = capsys.readouterr().err
    assert (
        rc == 2 and error.count("\n") == 1 and "needs a pre-trained backbone (--backbone" in error
    )


# ---------------------------------------------------------------------------- metrics


def _fixture(n: int = 600, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.5 * np.eye(n_classes)[labels]
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return scores, labels


def test_metrics_match_sklearn():
    names = ["QCD", "Hbb", "Wqq", "Tbqq"]
    scores, labels = _fixture()
    m = classification_metrics(scores, labels, names)
    assert m["accuracy"] == pytest.approx((scores.argmax(1) == labels).mean())
    sklearn_macro = roc_auc_score(labels, scores, multi_class="ovr", average="macro")
    assert m["macro_auc"] == pytest.approx(sklearn_macro, abs=1e-12)
    assert m["confusion_matrix"] == confusion_matrix(labels, scores.argmax(1)).tolist()
    for c, name in enumerate(names[1:], start=1):
        keep = (labels == c) | (labels == 0)
        score = scores[keep, c] / (scores[keep, c] + scores[keep, 0])
        expected = roc_auc_score(labels[keep] == c, score)
        assert m["per_class"][name]["auc_vs_qcd"] == pytest.approx(expected, abs=1e-12)
        assert m["per_class"][name]["auc"] == pytest.approx(
            roc_auc_score(labels == c, scores[:, c]), abs=1e-12
        )
    assert m["per_class"]["QCD"].get("auc_vs_qcd") is None
    assert m["absent_classes"] == []


def test_rejection_by_hand():
    signal = np.array([0.9, 0.8, 0.7, 0.3])
    background = np.array([0.85, 0.5, 0.4, 0.35, 0.2])
    # 50%: cut at 0.8 keeps 2 of 4 signal jets and 1 of 5 QCD jets.
    assert background_rejection(signal, background, 0.5) == pytest.approx(5.0)
    # 99%: all signal jets needs a cut at 0.3, which keeps 4 of 5 QCD jets.
    assert background_rejection(signal, background, 0.99) == pytest.approx(5 / 4)
    assert background_rejection(np.array([0.9, 0.8]), background, 0.5) == float("inf")
    # Through the class scores: p_s / (p_s + p_QCD), the third class's score does not matter.
    scores = np.array(
        [[0.1, 0.9, 0.0], [0.2, 0.8, 0.0], [0.15, 0.15, 0.7],  # two signal jets, one other
         [0.6, 0.2, 0.2], [0.45, 0.45, 0.1], [0.9, 0.05, 0.05]]  # three QCD jets
    )  # fmt: skip
    labels = np.array([1, 1, 2, 0, 0, 0])
    wqq = classification_metrics(scores, labels, ["QCD", "Wqq", "Tbqq"])["per_class"]["Wqq"]
    # Wqq scores: signal 0.9, 0.8; QCD 0.25, 0.5, 0.053 -> 50% at 0.9 keeps no QCD jet.
    assert wqq["auc_vs_qcd"] == 1.0 and wqq["rejection_50"] == float("inf")
    assert wqq["working_point"] == 0.5


def test_metrics_with_an_absent_class():
    scores, labels = _fixture(n_classes=3)
    labels[labels == 2] = 1  # no Tbqq jet left
    m = classification_metrics(scores, labels, ["QCD", "Wqq", "Tbqq"])
    assert m["absent_classes"] == ["Tbqq"]
    tbqq = m["per_class"]["Tbqq"]
    assert tbqq["n_jets"] == 0 and tbqq["auc"] is None and tbqq["auc_vs_qcd"] is None
    present = [roc_auc_score(labels == c, scores[:, c]) for c in (0, 1)]
    assert m["macro_auc"] == pytest.approx(np.mean(present))
    no_qcd = classification_metrics(
        scores[labels == 1], labels[labels == 1], ["QCD", "Wqq", "Tbqq"]
    )
    assert no_qcd["per_class"]["Wqq"]["auc_vs_qcd"] is None and no_qcd["macro_auc"] is None
    with pytest.raises(HepmpmError, match="3 classes, but 2 class names"):
        classification_metrics(scores, labels, ["QCD", "Wqq"])


def test_frozen_outputs_are_the_backbones_and_computed_once(skim, pretrained):
    """The frozen arm's kept outputs equal a backbone pass; a jet is passed through once."""
    from hepmpm.data.loader import JetDataset, make_dataloader
    from hepmpm.training.frozen_outputs import FrozenOutputs

    backbone = load_backbone(pretrained).eval()
    calls = []

    def counted(features, mask):
        calls.append(len(mask))
        return backbone(features, mask)

    store = FrozenOutputs(limit=20)
    batch = next(iter(make_dataloader(JetDataset(skim, "train", 16))))
    particles, registers = store(counted, batch)
    with torch.no_grad():
        expected, expected_registers = backbone(batch.features, batch.mask)
    torch.testing.assert_close(particles[batch.mask], expected[batch.mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(registers, expected_registers, atol=1e-5, rtol=1e-4)
    assert torch.all(particles[~batch.mask] == 0)
    again, _ = store(counted, batch)
    assert calls == [16] and torch.equal(again, particles)  # from the store
    wider = next(iter(make_dataloader(JetDataset(skim, "train", 32))))  # 16 kept + 16 new
    store(counted, wider)
    assert calls == [16, 16] and len(store.store) == 20  # the limit holds; the rest recomputed


def test_frozen_arm_trains_the_same_on_kept_outputs(skim, pretrained, tmp_path):
    overrides = [*FAST, "trainer.max_steps=12", "trainer.val_every_steps=6"]
    runs = {}
    for kept in (0, 20000):
        runs[kept] = run_finetune(
            "tiny", skim, tmp_path / f"kept{kept}", backbone_dir=pretrained, mode="frozen",
            overrides=[*overrides, f"frozen_cache_jets={kept}"], show_progress=False,
        )  # fmt: skip
    assert runs[0]["best_step"] == runs[20000]["best_step"]
    assert runs[0]["best_val_loss"] == pytest.approx(runs[20000]["best_val_loss"], rel=1e-4)
    assert runs[0]["test"]["accuracy"] == pytest.approx(runs[20000]["test"]["accuracy"], abs=0.02)
