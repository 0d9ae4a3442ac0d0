"""The README's "Tag jets in your analysis" recipe, run as written: its shell commands (through
the `hepmpm` entry point, in this process) and its Python snippet, in a folder laid out as the
README says: `sim/` simulated QCD and H->bb jets with `FatJet_truthLabel`, `data/` collision data.

The inputs: `sim/` is generated here (Pythia 8 + FastJet, 60 jets per class); `data/` holds the
real CMS PFNano file of ../shared/data (a generated `data`-preset sample where it is missing).
The one change to what the README says, to keep the run small: the fine-tuning command gets
`FAST` appended, `--set` overrides a user could pass as well (a few steps of small batches
instead of the config's 400 steps of 64). Every other command and the snippet run verbatim.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
from conftest import CMS, make_sample

from hepmpm.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## Tag jets in your analysis"
FAST = ["--set", "trainer.max_steps=6", "--set", "trainer.val_every_steps=3",
        "--set", "trainer.val_batches=1", "--set", "data.batch_size=16",
        "--set", "head_warmup_steps=2"]  # fmt: skip


def recipe() -> list[tuple[str, str]]:
    """The recipe's code blocks in order: ("bash", one command) or ("python", a snippet)."""
    text = README.read_text()
    assert HEADING in text, f"README has no {HEADING!r} section"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    steps = []
    for language, body in re.findall(r"```(bash|python)\n(.*?)```", section, re.DOTALL):
        if language == "python":
            steps.append(("python", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                steps.append(("bash", command))
    return steps


def test_the_recipe_is_the_chain_of_commands_an_analysis_needs():
    commands = [shlex.split(body)[:2] for kind, body in recipe() if kind == "bash"]
    assert all(c[0] == "hepmpm" for c in commands), commands
    assert [c[1] for c in commands] == ["skim", "finetune", "export", "tag", "tag", "calibrate"]
    finetune = next(body for kind, body in recipe() if "hepmpm finetune" in body)
    assert "--backbone pretrained:" in finetune
    assert [kind for kind, _ in recipe()][-1] == "python"


def test_the_recipe_runs_as_written(tmp_path, monkeypatch):
    make_sample(tmp_path / "sim", classes=("QCD", "Hbb"), jets=60, seed=41, workers=1)
    (tmp_path / "data").mkdir()
    if (CMS / "pfnano.root").is_file():
        shutil.copy(CMS / "pfnano.root", tmp_path / "data" / "nano.root")
    else:
        # Pseudo-data keeps its truth, so calibrate measures on it as on labelled data: it
        # needs jets of both classes.
        make_sample(tmp_path / "data", "data", classes=("QCD", "Hbb"), jets=30, seed=42, workers=1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for kind, body in recipe():
        if kind == "python":
            exec(compile(body, f"{README}: python block", "exec"), namespace)
            continue
        args = shlex.split(body)[1:]
        if args[0] == "finetune":
            args += FAST
        assert main(args) == 0, body
    # What each step left for the next, and what the analysis computed.
    assert json.loads(Path("tagger/tagger.json").read_text())["class_names"] == ["QCD", "Hbb"]
    calibration = json.loads(Path("calib/calibration.json").read_text())
    assert calibration["control_region"] and Path("calib/scale_factors.json").is_file()
    weights = namespace["weights"]
    assert set(weights) == {"nominal", "up", "down"}
    assert len(weights["nominal"]) == len(namespace["pt"])
    assert np.isfinite(weights["nominal"]).all()
    assert (weights["down"] <= weights["nominal"]).all()
    assert (weights["nominal"] <= weights["up"]).all()
