"""Every command keeps its contract under faults: a kill -9 and a rerun give a clean run's
output, two runs into one folder let exactly one proceed, a full disk or a read-only folder is
one line (exit 2) and leaves nothing half-written, a fine-tuning resumes exactly.

Commands run as an analyst runs them (``python -m hepmpm`` subprocesses) where the fault is a
process's (a kill, a race, a file-size limit); a full disk is a small tmpfs where this machine
may mount one (root), else ``RLIMIT_FSIZE`` (writes past it fail with EFBIG).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_sample
from hepmpm.export import export_tagger
from tagger_models import make_tagger_dir

from hepmpm.folder_lock import LOCK_NAME

TINY_RUN = [
    "--set", "data.pad_to=48", "--set", "data.batch_size=16", "--set", "trainer.val_batches=2",
    "--set", "trainer.log_every_steps=1", "--set", "trainer.cpu_threads=1",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def hepmpm(*args: str, limit_bytes: int | None = None, **kw) -> subprocess.CompletedProcess:
    """``python -m hepmpm ARGS`` as a user runs it; ``limit_bytes``: the largest file it may
    write (RLIMIT_FSIZE, SIGXFSZ ignored so a write past it fails with EFBIG)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [sys.executable, "-m", "hepmpm", *map(str, args)],
        capture_output=True, text=True, env=ENV, timeout=300,
        preexec_fn=limit if limit_bytes is not None else None, **kw,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    err = result.stderr.strip()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """QCD, Wqq and Hbb jets (40 each), one file per class."""
    out = tmp_path_factory.mktemp("faults_sample")
    make_sample(out, classes=("QCD", "Wqq", "Hbb"), jets=40, seed=5, workers=1)
    return out


@pytest.fixture(scope="module")
def skim(sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults_skim") / "skim"
    assert hepmpm("skim", sample, "--out", out, "--no-progress").returncode == 0
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    folder = make_tagger_dir(tmp_path_factory.mktemp("faults_tagger"), seed=1)
    return export_tagger(folder, tmp_path_factory.mktemp("faults_onnx") / "model.onnx").path


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB file system (tmpfs) where mounting is allowed; else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if made.returncode != 0:
        yield None
        return
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def kill_when(command: list[str], ready, timeout: float = 120.0) -> None:
    """Start ``hepmpm COMMAND``, kill -9 it as soon as ``ready()`` (or when it ends)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hepmpm", *map(str, command)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


# ------------------------------------------------------------------ one run per folder


def test_two_runs_into_one_folder_exactly_one_proceeds(skim, tmp_path):
    out = tmp_path / "race"
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "hepmpm", "pretrain", "--config", "tiny", "--data", str(skim),
             "--out", str(out), *TINY_RUN, "--set", f"trainer.max_steps={steps}",
             "--set", f"trainer.seed={seed}", "--set", "mpm.targets={regression: 1.0}",
             "--no-progress"],
            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for steps, seed in ((20, 1), (30, 2))
    ]  # fmt: skip
    results = [(r.wait(timeout=300), r.communicate()[1]) for r in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    (refused,) = [err.strip() for code, err in results if code == 2]
    assert len(refused.splitlines()) == 1
    assert "another hepmpm run" in refused or "already holds" in refused, refused
    # The folder is one run's: its record, config and backbone agree.
    steps = json.loads((out / "backbone.json").read_text())["steps"]
    assert f"max_steps: {steps}" in (out / "config.yaml").read_text()
    assert not (out / LOCK_NAME).exists()
    assert {p.name for p in (out / "checkpoints").iterdir()} <= {"best.ckpt", "last.ckpt"}


def test_a_held_folder_is_refused_and_a_killed_holder_frees_it(sample, model, tmp_path):
    out = tmp_path / "held"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path\n"
        "from hepmpm.folder_lock import holding_folder\n"
        "with holding_folder(Path(sys.argv[1]), 'skim'):\n    print('held', flush=True); "
        "time.sleep(600)"), str(out)], stdout=subprocess.PIPE, text=True, env=ENV)  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    for command in (
        ["skim", sample],
        ["tag", sample, "--model", model],
        ["generate", "--classes", "QCD", "--jets-per-class", "3"],
        ["calibrate", "--sim", sample, "--data", sample, "--signal", "Wqq",
         "--working-points", "eff=0.5"],
    ):  # fmt: skip
        one_line_error(hepmpm(*command, "--out", out), "being written by another hepmpm run",
                       f"pid {holder.pid}")  # fmt: skip
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # The lock file stays, but a dead process holds no lock: the next run proceeds.
    assert hepmpm("skim", sample, "--out", out, "--no-progress").returncode == 0
    assert not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------ kill -9, then rerun


def test_killed_skim_and_tag_rerun_to_a_clean_runs_output(sample, model, tmp_path):
    clean_skim, clean_tag = tmp_path / "clean_skim", tmp_path / "clean_tag"
    assert hepmpm("skim", sample, "--out", clean_skim, "--no-progress").returncode == 0
    assert hepmpm("tag", sample, "--model", model, "--out", clean_tag,
                  "--no-progress").returncode == 0  # fmt: skip
    skim_out, tag_out = tmp_path / "skim", tmp_path / "tag"
    kill_when(["skim", sample, "--out", skim_out, "--no-progress"],
              lambda: any(skim_out.glob(".staging-*/**/*.parquet")))  # fmt: skip
    kill_when(["tag", sample, "--model", model, "--out", tag_out, "--no-progress"],
              lambda: any(tag_out.glob(".staging/**/*.parquet")))  # fmt: skip
    assert hepmpm("skim", sample, "--out", skim_out, "--no-progress").returncode == 0
    assert hepmpm("tag", sample, "--model", model, "--out", tag_out,
                  "--no-progress").returncode == 0  # fmt: skip
    shards = lambda folder: {k: v for k, v in files(folder).items() if k.startswith("shards/")}  # noqa: E731
    assert shards(skim_out) == shards(clean_skim) and shards(skim_out)
    assert not list(skim_out.glob(".staging*")) and not list(tag_out.glob(".staging*"))
    scores = lambda folder: sorted(files(folder / "scores"))  # noqa: E731
    assert scores(tag_out) == scores(clean_tag)
    for name in scores(clean_tag):
        a, b = (pq.read_table(f / "scores" / name) for f in (tag_out, clean_tag))
        assert a.equals(b)


def test_killed_training_runs_resume_to_the_uninterrupted_weights(skim, tmp_path):
    """Pre-training and fine-tuning killed after their first checkpoint (mid-run, between
    validations) and resumed end with the weights of a run never interrupted."""
    pretrain = ["pretrain", "--config", "tiny", "--data", skim, *TINY_RUN,
                "--set", "trainer.max_steps=40", "--set", "trainer.val_every_steps=10",
                "--set", "mpm.targets={regression: 1.0}", "--no-progress"]  # fmt: skip
    finetune = ["finetune", "--config", "tiny", "--mode", "scratch", "--data", skim,
                "--classes", "QCD,Wqq,Hbb", "--labels", "60", *TINY_RUN,
                "--set", "trainer.max_steps=40", "--set", "trainer.val_every_steps=10",
                "--no-progress"]  # fmt: skip
    for command, weights in ((pretrain, "backbone.pt"), (finetune, "tagger.pt")):
        clean, killed = tmp_path / f"{command[0]}_clean", tmp_path / f"{command[0]}_killed"
        assert hepmpm(*command, "--out", clean).returncode == 0
        kill_when([*command, "--out", killed], (killed / "checkpoints" / "last.ckpt").is_file)
        resumed = hepmpm(*command, "--out", killed, "--resume")
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        a, b = (torch.load(f / weights, weights_only=True) for f in (clean, killed))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), command[0]
        assert not list(killed.rglob("*.tmp")) and not (killed / LOCK_NAME).exists()
        assert {p.name for p in (killed / "checkpoints").iterdir()} <= {"best.ckpt", "last.ckpt"}


# ------------------------------------------------------------------ a full disk


@pytest.mark.parametrize("command", ["skim", "tag", "finetune"])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(
    command, sample, skim, model, small_disk, tmp_path
):
    where = small_disk or tmp_path
    out = where / "out"
    args = {
        "skim": ["skim", sample, "--no-progress"],
        "tag": ["tag", sample, "--model", model, "--no-progress"],
        "finetune": ["finetune", "--config", "tiny", "--mode", "scratch", "--data", skim,
                     "--classes", "QCD,Wqq", *TINY_RUN, "--set", "trainer.max_steps=12",
                     "--set", "trainer.val_every_steps=6", "--no-progress"],
    }[command]  # fmt: skip
    if small_disk is not None:  # fill it, leaving too little for the output
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * {"skim": 330_000, "tag": 370_000, "finetune": 200_000}[command])
        result = hepmpm(*args, "--out", out)
    else:
        limit = {"skim": 20_000, "tag": 2_000, "finetune": 60_000}[command]
        result = hepmpm(*args, "--out", out, limit_bytes=limit)
    one_line_error(result, "No space left on device" if small_disk else "File too large")
    if command == "finetune":  # a training folder is kept for --resume: no truncated file
        assert not (out / "tagger.pt").exists() and not (out / "metrics.json").exists()
        for checkpoint in (out / "checkpoints").glob("*"):
            torch.load(checkpoint, weights_only=True)
        assert not list(out.rglob("*.tmp"))
    else:  # nothing at all
        assert not out.exists() or not any(out.iterdir()), sorted(out.rglob("*"))


# ------------------------------------------------------------------ the output side


def test_output_side_failures_are_one_line(sample, model, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    one_line_error(hepmpm("skim", sample, "--out", a_file), "is a file, not a folder")
    one_line_error(hepmpm("tag", sample, "--model", model, "--out", a_file),
                   "is a file, not a folder")  # fmt: skip
    read_only = tmp_path / "ro"
    read_only.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(read_only)],
                          capture_output=True)  # fmt: skip
    if made.returncode == 0:
        try:
            one_line_error(hepmpm("skim", sample, "--out", read_only / "s"), "Read-only")
            one_line_error(hepmpm("tag", sample, "--model", model, "--out", read_only),
                           "Read-only")  # fmt: skip
        finally:
            subprocess.run(["umount", str(read_only)], check=False)


def test_a_failed_tag_leaves_nothing_and_is_rerun(sample, model, tmp_path, monkeypatch):
    import hepmpm.tag as tag

    out = tmp_path / "tag"

    def full(*_args, **_kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tag, "write_hists", full)
    request = tag.TagRequest(model=model, inputs=[sample], out=out)
    with pytest.raises(OSError):
        tag.run_tag(request, show_progress=False)
    assert not out.exists()
    monkeypatch.undo()
    summary, _ = tag.run_tag(request, show_progress=False)
    assert summary["counts"] and {p.name for p in out.iterdir()} == {
        "scores",
        "hists.json",
        "summary.json",
    }


def test_onnx_metadata_that_does_not_match_the_graph(model, sample, tmp_path):
    graph = onnx.load(str(model))
    for prop in graph.metadata_props:
        if prop.key == "hepmpm.features":
            features = json.loads(prop.value)
            prop.value = json.dumps(features[:8])
        if prop.key == "hepmpm.feature_set":
            prop.value = "mpm7id"
    bad = tmp_path / "bad.onnx"
    onnx.save(graph, str(bad))
    one_line_error(hepmpm("tag", sample, "--model", bad, "--out", tmp_path / "t"),
                   str(bad), "17")  # fmt: skip


def test_export_checks_quantize_data_before_writing(tmp_path):
    folder = make_tagger_dir(tmp_path / "ft", seed=2)
    out = tmp_path / "model.onnx"
    one_line_error(hepmpm("export", folder, "--out", out, "--quantize", "int8",
                          "--data", tmp_path / "WRONG"), "WRONG")  # fmt: skip
    assert not out.exists() and not list(tmp_path.glob("model*"))


def test_resume_from_a_bad_checkpoint_is_one_line_and_starts_no_log(skim, tmp_path):
    out = tmp_path / "ft"
    command = ["finetune", "--config", "tiny", "--mode", "scratch", "--data", skim,
               "--classes", "QCD,Wqq", *TINY_RUN, "--set", "trainer.max_steps=4",
               "--set", "trainer.val_every_steps=2", "--out", out, "--no-progress"]  # fmt: skip
    assert hepmpm(*command).returncode == 0
    last = out / "checkpoints" / "last.ckpt"
    logs = sorted((out / "logs").iterdir())
    last.write_bytes(last.read_bytes()[:5000])  # truncated
    one_line_error(hepmpm(*command, "--resume"), str(last), "cannot read the checkpoint")
    # A pickle with code in it: refused without the advice to unpickle it.
    import pickle

    last.write_bytes(pickle.dumps(np.random.default_rng(0)))
    err = one_line_error(hepmpm(*command, "--resume"), str(last), "never unpickles")
    assert "weights_only" not in err
    assert sorted((out / "logs").iterdir()) == logs  # no empty logs/version_N
