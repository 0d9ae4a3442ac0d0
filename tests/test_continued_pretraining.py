"""Continued (domain-adaptive) pre-training: ``--init`` starts from existing weights, records
where it started, and refuses weights that cannot continue; shipped backbones resolve by name."""

from __future__ import annotations

import csv
import json

import pytest

from hepmpm.cli import main
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.pretrained import check_card, resolve_backbone, shipped
from hepmpm.training.pretrain import run_pretrain

FAST = [
    "mpm.targets={regression: 1.0, id: 1.0}",
    "trainer.val_every_steps=20",
    "trainer.val_batches=2",
    "trainer.log_every_steps=1",
    "data.batch_size=32",
    "trainer.cpu_threads=1",
]


def _losses(out) -> list[float]:
    rows = list(csv.DictReader((out / "logs" / "version_0" / "metrics.csv").open()))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


@pytest.fixture(scope="module")
def source(skim_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("source") / "run"
    run_pretrain("tiny", skim_dir, out, overrides=[*FAST, "trainer.max_steps=80"],
                 show_progress=False)  # fmt: skip
    return out


def test_init_continues_from_the_given_weights(skim_dir, source, tmp_path):
    fresh, continued = tmp_path / "fresh", tmp_path / "continued"
    steps = [*FAST, "trainer.max_steps=3", "optimizer.warmup_steps=1", "trainer.seed=5"]
    run_pretrain("tiny", skim_dir, fresh, overrides=steps, show_progress=False)
    run_pretrain("tiny", skim_dir, continued, overrides=steps, show_progress=False, init=source)
    trained = _losses(source)
    first_fresh, first_continued = _losses(fresh)[0], _losses(continued)[0]
    # The first step's loss is the pre-trained model's (heads included), not a random one's.
    assert first_continued < first_fresh
    assert abs(first_continued - min(trained[-10:])) < abs(first_fresh - min(trained[-10:]))
    record = json.loads((continued / "backbone.json").read_text())
    assert record["init"].pop("val_loss") > 0  # validated before its first step
    assert record["init"] == {"from": str(source), "folder": str(source), "weights": "mpm"}
    assert json.loads((continued / "run.json").read_text())["init"] == str(source)
    # A resume must keep the recorded starting point.
    with pytest.raises(HepmpmError, match="init"):
        run_pretrain("tiny", skim_dir, continued, overrides=steps, resume=True,
                     show_progress=False, init=fresh)  # fmt: skip


def test_a_continued_run_validates_where_it_starts(skim_dir, source, tmp_path):
    """Before its first step: the loss the source ended with on the same validation jets and
    masks (the same seed), logged at step 0 and recorded, so a reader sees whether continuing
    moved it; a resume keeps the record."""
    out = tmp_path / "continued"
    steps = [*FAST, "trainer.max_steps=2", "optimizer.warmup_steps=1"]
    run_pretrain("tiny", skim_dir, out, overrides=steps, show_progress=False, init=source)
    start = json.loads((out / "backbone.json").read_text())["init"]["val_loss"]
    source_end = json.loads((source / "backbone.json").read_text())["metrics"]["val/loss"]
    assert start == pytest.approx(source_end, rel=1e-5)
    logged = list(csv.DictReader((out / "logs" / "version_0" / "metrics.csv").open()))
    first = next(r for r in logged if r.get("val/loss"))
    assert (int(first["step"]), float(first["val/loss"])) == (0, pytest.approx(start))
    (out / "backbone.json").unlink()  # as if stopped before its end: resumed, not validated again
    run_pretrain("tiny", skim_dir, out, overrides=[*FAST, "trainer.max_steps=3",
                 "optimizer.warmup_steps=1", "trainer.schedule_steps=2"], resume=True,
                 show_progress=False, init=source)  # fmt: skip
    assert json.loads((out / "backbone.json").read_text())["init"]["val_loss"] == start


def test_init_with_other_mpm_settings_loads_the_backbone_alone(skim_dir, source, tmp_path):
    out = tmp_path / "v2"
    overrides = [*FAST, "trainer.max_steps=2", "mpm.mode=v2"]
    run_pretrain("tiny", skim_dir, out, overrides=overrides, show_progress=False, init=source)
    assert json.loads((out / "backbone.json").read_text())["init"]["weights"] == "backbone"


def test_init_refuses_what_cannot_continue(skim_dir, source, tmp_path, capsys):
    with pytest.raises(HepmpmError, match=r"--set backbone\.dim=64 conflicts with init .*, "
                       r"which has backbone\.dim=32: a continued backbone keeps"):  # fmt: skip
        run_pretrain("tiny", skim_dir, tmp_path / "a", overrides=[*FAST, "backbone.dim=64"],
                     init=source)  # fmt: skip
    with pytest.raises(HepmpmError, match=r"backbone\.standardise_inputs=true conflicts .* "
                       r"has backbone\.standardise_inputs=False"):  # fmt: skip
        run_pretrain("tiny", skim_dir, tmp_path / "a", init=source,
                     overrides=[*FAST, "backbone.standardise_inputs=true"])  # fmt: skip
    assert not (tmp_path / "a").exists()  # refused before anything is written
    with pytest.raises(HepmpmError, match="no shipped backbone 'nope'"):
        run_pretrain("tiny", skim_dir, tmp_path / "b", overrides=FAST, init="pretrained:nope")
    args = ["pretrain", "--config", "tiny", "--data", str(skim_dir), "--out", str(tmp_path / "c"),
            "--init", str(tmp_path / "missing")]  # fmt: skip
    for override in FAST:
        args += ["--set", override]
    assert main(args) == 2
    assert "holds no backbone.json" in capsys.readouterr().err


def test_backbone_config_checks_heads():
    with pytest.raises(ConfigError, match="not a multiple of heads"):
        from hepmpm.config import parse_config
        from hepmpm.models.backbone import BackboneConfig

        parse_config(BackboneConfig, {"dim": 30, "heads": 4}, "test")


def test_shipped_backbones_match_their_cards(capsys):
    for folder in shipped().values():
        card = check_card(folder)
        assert set(card["sha256"]) >= {"backbone.pt", "backbone.json"}
        assert resolve_backbone(f"pretrained:{folder.name}") == folder
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    assert all(f"pretrained:{name}" in out for name in shipped())


@pytest.mark.skipif(not shipped(), reason="no backbone ships")
def test_a_shipped_backbone_fine_tunes_and_continues(skim_dir, tmp_path):
    from hepmpm.models.store import load_backbone
    from hepmpm.training.finetune import run_finetune

    name = f"pretrained:{next(iter(shipped()))}"
    steps = ["trainer.max_steps=2", "trainer.val_every_steps=2", "trainer.val_batches=1",
             "data.batch_size=16", "trainer.cpu_threads=1"]  # fmt: skip
    run_finetune("compact", skim_dir, tmp_path / "ft", backbone_dir=name, mode="frozen",
                 overrides=steps, show_progress=False)  # fmt: skip
    tagger_backbone = json.loads((tmp_path / "ft" / "tagger.json").read_text())["backbone"]
    shipped_backbone = load_backbone(resolve_backbone(name)).config.model_dump(mode="json")
    assert tagger_backbone == shipped_backbone
    run_pretrain("compact", skim_dir, tmp_path / "pre", overrides=steps, init=name,
                 show_progress=False)  # fmt: skip
    record = json.loads((tmp_path / "pre" / "backbone.json").read_text())
    assert record["init"]["from"] == name and record["init"]["weights"] == "mpm"


def test_a_pre_training_made_outside_a_study_ships_with_its_card(skim_dir, tmp_path, capsys):
    from hepmpm.studies import ship_backbone

    out = tmp_path / "lease"
    probe = [f"probe.skim={skim_dir}", "probe.labels=12", "probe.score_jets=6"]
    run_pretrain("tiny", skim_dir, out, overrides=[*FAST, "trainer.max_steps=20", *probe],
                 show_progress=False)  # fmt: skip
    corpus = ship_backbone.parse_corpus("preset=sim,classes=QCD+Tbqq,jets_per_class=50,seed=51")
    assert corpus == {"preset": "sim", "classes": ["QCD", "Tbqq"], "jets_per_class": 50, "seed": 51}
    card = ship_backbone.make_card(out, corpus, corpus["classes"], "probe jets", "the lease")
    folder = ship_backbone.ship(out, card, "tiny-lease", root=tmp_path / "shipped")
    card = check_card(folder)
    assert card["data"]["jets"] == 100 and card["data"]["seed"] == 51
    assert card["made_by"] == "the lease" and card["steps"] == 20
    assert 0 <= card["probe"]["random_init_accuracy"] <= 1 and card["probe"]["fit_jets"] == 12
    # A corpus it cannot read is one line naming the flag; nothing ships.
    args = ["pretrained", "ship", "--pretrain", str(out), "--name", "never", "--made-by", "x",
            "--corpus", "preset=sim"]  # fmt: skip
    assert main(args) == 2
    assert "--corpus 'preset=sim': expected preset=P" in capsys.readouterr().err
    assert "never" not in shipped()
    args[3] = str(tmp_path / "unfinished")
    args[-1] = "preset=sim,classes=QCD,jets_per_class=5,seed=1"
    assert main(args) == 2
    assert "lacks backbone.pt, backbone.json, mpm.pt" in capsys.readouterr().err
    assert main(["pretrained", "ship", "--pretrain", str(out), "--name", "never"]) == 2
    assert "--pretrain needs --corpus and --made-by" in capsys.readouterr().err


SHIPPED = "pretrained:compact-sim4-stdin-mask60-gpu"  # what the README and the quickstart use


@pytest.mark.skipif(SHIPPED.split(":")[1] not in shipped(), reason=f"{SHIPPED} does not ship")
def test_continuing_takes_the_architecture_and_recipe_of_what_it_continues(
    skim_dir, tmp_path, capsys
):
    """``hepmpm pretrain --config compact --init pretrained:...-stdin-mask60-gpu`` as the README
    writes it: the compact config says standardise_inputs false and 40 % masking, the backbone
    has its inputs standardised and was pre-trained at 60 %; the run continues the backbone
    with its own settings and input statistics, heads included."""
    import torch
    import yaml

    from hepmpm.models.store import load_backbone

    out = tmp_path / "continued"
    steps = ["trainer.max_steps=2", "trainer.val_every_steps=2", "trainer.val_batches=1",
             "data.batch_size=16", "trainer.cpu_threads=1", "backbone.dropout=0.1"]  # fmt: skip

    def pretrain(out, *overrides):
        args = ["pretrain", "--config", "compact", "--init", SHIPPED, "--data", str(skim_dir),
                "--out", str(out), "--no-progress"]  # fmt: skip
        return main([*args, *(a for s in [*steps, *overrides] for a in ("--set", s))])

    assert pretrain(out) == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    continued = load_backbone(resolve_backbone(SHIPPED))
    architecture = continued.config.architecture()
    assert {k: resolved["backbone"][k] for k in architecture} == architecture
    assert resolved["backbone"]["standardise_inputs"] is True
    assert resolved["backbone"]["dropout"] == 0.1  # the run's own: not the architecture
    record = json.loads((resolve_backbone(SHIPPED) / "backbone.json").read_text())
    assert resolved["mpm"] == record["mpm"] and resolved["mpm"]["mask_fraction"] == 0.6
    assert resolved["optimizer"]["lr"] == 1.0e-3  # the rest is the config's
    assert json.loads((out / "backbone.json").read_text())["init"]["weights"] == "mpm"
    embed, shipped_embed = load_backbone(out).embed, continued.embed
    torch.testing.assert_close(embed.input_mean, shipped_embed.input_mean, rtol=0, atol=0)
    torch.testing.assert_close(embed.input_std, shipped_embed.input_std, rtol=0, atol=0)
    # An explicit override of the recipe is honoured (the heads then start afresh).
    other = tmp_path / "mask50"
    assert pretrain(other, "mpm.mask_fraction=0.5") == 0
    assert yaml.safe_load((other / "config.yaml").read_text())["mpm"]["mask_fraction"] == 0.5
    assert json.loads((other / "backbone.json").read_text())["init"]["weights"] == "backbone"
    capsys.readouterr()
    # An explicit override of the architecture cannot continue: one line, exit 2, no folder.
    refused = tmp_path / "refused"
    assert pretrain(refused, "backbone.standardise_inputs=false") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hepmpm pretrain: error: --set " in err
    assert "backbone.standardise_inputs=false conflicts with init " + SHIPPED in err
    assert not refused.exists()
