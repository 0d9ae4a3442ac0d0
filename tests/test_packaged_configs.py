"""Every packaged YAML loads with the model it configures, and every stage a study or the
quickstart names resolves with its overrides: a config that cannot run never ships."""

from __future__ import annotations

from pathlib import Path

import pytest

from hepmpm.config import load_config, packaged_config_path
from hepmpm.errors import ConfigError
from hepmpm.generate.preset import load_preset
from hepmpm.quickstart import load_profile
from hepmpm.studies.common import load_study_config
from hepmpm.studies.runner import STUDIES
from hepmpm.training.finetune import load_finetune_config
from hepmpm.training.pretrain import PretrainConfig
from hepmpm.training.stages import check_stage
from hepmpm.training.tokenizer import load_tokenizer_config

ROOT = packaged_config_path()
STUDY_CLASSES = {study.module: study for study in STUDIES.values()}


def _yaml(folder: str) -> list[Path]:
    return sorted((ROOT / folder).glob("*.yaml"))


def _load(path: Path) -> None:
    folder = path.parent.name
    if folder == "generate":
        load_preset(str(path))
    elif folder == "tokenizer":
        load_tokenizer_config(path)
    elif folder == "pretrain":
        load_config(PretrainConfig, path)
    elif folder == "finetune":
        load_finetune_config(path)
    elif folder == "quickstart":
        load_profile(path)
    else:  # studies: X.yaml and X_<variant>.yaml (X_gpu.yaml, ...) configure the study X
        module = max((m for m in STUDY_CLASSES if f"{path.stem}_".startswith(f"{m}_")), key=len)
        config_class, _ = STUDY_CLASSES[module].load()
        load_study_config(config_class, path)
        if not path.stem.endswith("_gpu"):
            load_study_config(config_class, path, tiny=True)


FOLDERS = ("generate", "tokenizer", "pretrain", "finetune", "quickstart", "studies")


@pytest.mark.parametrize(
    "path", [p for f in FOLDERS for p in _yaml(f)], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_packaged_config_loads_and_its_stages_resolve(path):
    _load(path)


def test_every_packaged_folder_is_covered():
    assert {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_")} == set(
        FOLDERS
    )
    assert all(_yaml(f) for f in FOLDERS)


def test_a_mistyped_stage_override_fails_before_anything_runs():
    config_class, _ = STUDIES["label-efficiency"].load()
    path = ROOT / "studies" / "label_efficiency.yaml"
    with pytest.raises(ConfigError, match=r"finetune: .*unknown key 'trainer\.max_stesp'"):
        load_study_config(config_class, path, ["finetune.overrides=[trainer.max_stesp=3]"])
    with pytest.raises(ConfigError, match=r"scratch: .*'optimiser' was renamed: use 'optimizer'"):
        load_profile("tiny", ["scratch.overrides=[optimiser.lr=1.0]"])
    with pytest.raises(ConfigError, match=r"adapted: .*unknown key 'adaptation\.dann_wieght'"):
        load_profile("tiny", ["adapted.overrides=[adaptation.dann_wieght=1.0]"])


@pytest.mark.parametrize(
    ("kind", "config", "old", "new"),
    [
        ("tokenizer", "tiny", "optimiser=1.0", "optimizer"),
        ("tokenizer", "tiny", "optimizer.final_lr_fraction=0.1", "optimizer.min_lr_ratio"),
        ("tokenizer", "tiny", "trainer.val_every=10", "trainer.val_every_steps"),
        ("tokenizer", "tiny", "trainer.batch_size=16", "data.batch_size"),
        ("pretrain", "tiny", "trainer.val_every=10", "trainer.val_every_steps"),
        ("finetune", "tiny", "trainer.batch_size=16", "data.batch_size"),
    ],
)
def test_old_spellings_name_the_new_key(kind, config, old, new):
    """One vocabulary: a key of an earlier version is refused with the key that replaced it."""
    with pytest.raises(ConfigError, match=rf"'{old.split('=')[0]}' was renamed: use '{new}'"):
        check_stage(kind, config, [old], "here")
