"""Masked particle pre-training with real Lightning on the generated jets (CPU, ``tiny`` sizes).

Targets are the token ids of a k-means tokenizer fitted once per module (32 centroids, seconds);
the ``skim_dir`` fixture's ~380 training jets make 5 batches of 64 per epoch, so the runs below
cross several epochs and the resume test stops mid-epoch.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_skim

from hepmpm.cli import main
from hepmpm.errors import ConfigError, HepmpmError
from hepmpm.features import PART17
from hepmpm.models.store import load_backbone
from hepmpm.training.pretrain import run_pretrain
from hepmpm.training.tokenizer import load_tokenizer_config, run_tokenizer

KMEANS = "mpm.targets={kmeans: 1.0}"


@pytest.fixture(scope="module")
def kmeans17(skim_dir, tmp_path_factory) -> Path:
    """A 32-centroid k-means tokenizer fitted on the part17 skim."""
    out = tmp_path_factory.mktemp("pretrain_tokenizers") / "kmeans17"
    run_tokenizer("tiny_kmeans", skim_dir, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def skim_mpm7id(sim_sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain_skim_mpm7id")
    make_skim([sim_sample], out, feature_set="mpm7id")
    return out


@pytest.fixture(scope="module")
def kmeans7(skim_mpm7id, tmp_path_factory) -> Path:
    """The same tokenizer fitted on the mpm7id skim: another feature set."""
    out = tmp_path_factory.mktemp("pretrain_tokenizers") / "kmeans7"
    run_tokenizer("tiny_kmeans", skim_mpm7id, out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def short_run(skim_dir, kmeans17, tmp_path_factory) -> Path:
    """A finished 5-step tiny run (a folder with checkpoints to resume, or refuse to)."""
    out = tmp_path_factory.mktemp("pretrain_runs") / "short"
    pretrain(skim_dir, out, kmeans17, "trainer.max_steps=5", "trainer.val_every_steps=5")
    return out


def pretrain(skim: Path, out: Path, tokenizer: Path | None, *overrides: str, resume=False):
    return run_pretrain(
        "tiny", skim, out, overrides=[KMEANS, *overrides], tokenizer_dir=tokenizer,
        resume=resume, show_progress=False,
    )  # fmt: skip


def read_log(out: Path, version: int) -> list[dict[str, str]]:
    with (out / "logs" / f"version_{version}" / "metrics.csv").open() as file:
        return list(csv.DictReader(file))


def column(rows: list[dict[str, str]], name: str) -> dict[int, float]:
    """``{step: value}`` of one logged metric."""
    return {int(r["step"]): float(r[name]) for r in rows if r.get(name)}


# ---------------------------------------------------------------------------- learning


@pytest.mark.parametrize("mode", ["v1", "v2"])
def test_masked_tokens_are_predicted_beyond_the_most_frequent(mode, skim_dir, kmeans17, tmp_path):
    out = tmp_path / mode
    metrics = pretrain(
        skim_dir,
        out,
        kmeans17,
        f"mpm.mode={mode}",
        "trainer.max_steps=150",
        "trainer.val_every_steps=75",
    )
    assert metrics["steps"] == 150
    acc, baseline = metrics["val/acc_kmeans"], metrics["val/baseline_kmeans"]
    # Measured (150 steps, 32 tokens): v1 0.26, v2 0.23; always the most frequent: 0.067.
    assert acc > 2.5 * baseline and acc > baseline + 0.1, (acc, baseline)
    assert metrics["val/top5_kmeans"] > acc
    rows = read_log(out, 0)
    val_loss = column(rows, "val/loss")
    assert sorted(val_loss) == [74, 149]  # validation every 75 steps
    train_loss = column(rows, "train/loss")
    early = [v for s, v in train_loss.items() if s < 30]
    late = [v for s, v in train_loss.items() if s >= 120]
    assert sum(late) / len(late) < 0.8 * sum(early) / len(early)
    lr = column(rows, "lr-AdamW/pg1")  # warm-up then cosine decay
    assert lr[9] < lr[19] and lr[19] > lr[149] and lr[149] < 0.2 * lr[19]
    record = json.loads((out / "backbone.json").read_text())
    assert record["steps"] == 150 and record["mpm"]["mode"] == mode
    assert record["metrics"]["val/acc_kmeans"] == pytest.approx(acc)


# ---------------------------------------------------------------------------- resume


def test_resume_continues_exactly(skim_dir, kmeans17, tmp_path):
    common = ("trainer.val_every_steps=10", "trainer.log_every_steps=1")
    whole, split = tmp_path / "whole", tmp_path / "split"
    pretrain(skim_dir, whole, kmeans17, *common, "trainer.max_steps=30")
    # Stop at step 13, mid-epoch (5 batches per epoch), on the 30-step schedule; then resume.
    stopped = pretrain(
        skim_dir, split, kmeans17, *common, "trainer.max_steps=13", "trainer.schedule_steps=30"
    )
    assert stopped["steps"] == 13
    with pytest.raises(HepmpmError, match="add --resume"):
        pretrain(skim_dir, split, kmeans17, *common, "trainer.max_steps=30")
    resumed = pretrain(skim_dir, split, kmeans17, *common, "trainer.max_steps=30", resume=True)
    assert resumed["steps"] == 30
    # The loss curve continues where it stopped, and is the uninterrupted run's.
    first, second = (
        column(read_log(split, 0), "train/loss"),
        column(read_log(split, 1), "train/loss"),
    )
    assert sorted(first) == list(range(13)) and sorted(second) == list(range(13, 30))
    assert {**first, **second} == column(read_log(whole, 0), "train/loss")
    # Exact resume: same batches, masks, optimizer and schedule state -> the same weights.
    a = torch.load(whole / "backbone.pt", weights_only=True)
    b = torch.load(split / "backbone.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((split / "backbone.json").read_text())["steps"] == 30
    assert {p.name for p in (split / "checkpoints").iterdir()} == {"best.ckpt", "last.ckpt"}


# ---------------------------------------------------------------------------- DDP


def test_ddp_on_two_cpu_processes(skim_dir, kmeans17, tmp_path):
    """``hepmpm pretrain`` as an analyst launches it; Lightning starts the second process."""
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "hepmpm", "pretrain", "--config", "tiny", "--data", str(skim_dir),
        "--tokenizer", str(kmeans17), "--out", str(out), "--no-progress",
        "--set", KMEANS, "--set", "trainer.max_steps=6", "--set", "trainer.val_every_steps=3",
        "--set", "trainer.val_batches=1", "--set", "data.batch_size=32",
        "--set", "trainer.accelerator=cpu", "--set", "trainer.strategy=ddp", "--devices", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    text = done.stdout + done.stderr
    assert "MEMBER: 2/2" in text  # Lightning's banner of the gloo backend is hidden (quiet CLI)
    assert "GPU available" not in text
    assert done.stdout.count("pre-trained 6 steps") == 1  # rank 0 reports
    record = json.loads((out / "backbone.json").read_text())
    assert record["world_size"] == 2 and record["steps"] == 6
    assert load_backbone(out, PART17).config.dim == 32


# ---------------------------------------------------------------------------- bad input


def test_resume_refuses_another_size(skim_dir, kmeans17, short_run):
    with pytest.raises(HepmpmError, match=r"backbone\.dim = 32, this run has backbone\.dim = 64"):
        pretrain(skim_dir, short_run, kmeans17, "backbone.dim=64", resume=True)
    with pytest.raises(HepmpmError, match=r"mpm\.mode = 'v1', this run has mpm\.mode = 'v2'"):
        pretrain(skim_dir, short_run, kmeans17, "mpm.mode=v2", resume=True)


def test_resume_refuses_another_tokenizer(skim_dir, short_run, tmp_path):
    other = tmp_path / "kmeans"
    config = load_tokenizer_config("tiny_kmeans", ["fit.seed=1"])
    run_tokenizer(config, skim_dir, other, show_progress=False)
    with pytest.raises(HepmpmError, match=r"tokenizer\.weights_sha256 = '\w+', this run"):
        pretrain(skim_dir, short_run, other, resume=True)


def test_resume_refuses_another_feature_set(skim_mpm7id, kmeans7, short_run):
    with pytest.raises(HepmpmError, match=r"feature_set = 'part17', this run has .* 'mpm7id'"):
        pretrain(skim_mpm7id, short_run, kmeans7, resume=True)


def test_tokenizer_of_another_feature_set(skim_dir, kmeans7, tmp_path):
    with pytest.raises(HepmpmError, match="fitted on feature set 'mpm7id', the data is 'part17'"):
        pretrain(skim_dir, tmp_path / "run", kmeans7)
    assert not (tmp_path / "run").exists()


def test_config_errors_name_the_key(skim_dir, kmeans17, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"unknown key 'trainer\.max_stepz'"):
        pretrain(skim_dir, out, kmeans17, "trainer.max_stepz=5")
    with pytest.raises(ConfigError, match=r"key 'trainer\.max_steps'.*'many'"):
        pretrain(skim_dir, out, kmeans17, "trainer.max_steps=many")
    # The CLI: one line naming the key, exit code 2, nothing written.
    args = ["pretrain", "--config", "tiny", "--data", str(skim_dir), "--out", str(out)]
    assert main([*args, "--tokenizer", str(kmeans17), "--set", "backbone.depht=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hepmpm pretrain: error:") and "'backbone.depht'" in err
    assert len(err.splitlines()) == 1
    # A token target without a tokenizer.
    assert main([*args, "--set", KMEANS]) == 2
    assert "mpm.targets: 'kmeans' needs a tokenizer (--tokenizer DIR" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------- the CLI


def test_cli_end_to_end(skim_dir, kmeans17, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["pretrain", "--config", "tiny", "--data", str(skim_dir), "--tokenizer", str(kmeans17),
         "--out", str(out), "--no-progress", "--set", "mpm.targets={kmeans: 1.0, id: 0.5}",
         "--set", "mpm.mode=v2", "--set", "trainer.max_steps=40",
         "--set", "trainer.val_every_steps=20"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "pre-trained 40 steps" in printed and "val/acc_id" in printed
    assert str(out / "backbone.pt") in printed
    backbone = load_backbone(out, PART17)
    assert backbone.config.dim == 32 and backbone.config.depth == 2
    record = json.loads((out / "backbone.json").read_text())
    assert record["mpm"]["targets"] == {"kmeans": 1.0, "id": 0.5} and record["n_tokens"] == 32
    assert {"val/loss_kmeans", "val/loss_id", "val/baseline_id"} <= set(record["metrics"])
    assert (out / "config.yaml").is_file() and (out / "run.json").is_file()
    header = (out / "logs" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "train/loss_kmeans" in header and "val/top5_kmeans" in header
    has_tensorboard = any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
    assert (out / "tensorboard").is_dir() == has_tensorboard
