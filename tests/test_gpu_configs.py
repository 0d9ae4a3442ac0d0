"""The GPU-scale configs run: two steps of each on the CPU in bf16 autocast (the precision they
use on CUDA), then the fine-tuned tagger exported to ONNX and checked against torch.

Sizes (backbone, decoder, heads) and every other key stay as configured; only the step count,
batch size, workers, device and validation length are cut, so a key the code no longer reads or
an architecture that does not fit fails here, not after hours on a GPU node.
"""

from __future__ import annotations

import pytest

from hepmpm.config import packaged_config_path
from hepmpm.studies.common import load_study_config
from hepmpm.studies.runner import STUDIES
from hepmpm.training.finetune import run_finetune
from hepmpm.training.pretrain import run_pretrain
from hepmpm.training.tokenizer import run_tokenizer

#: What a CPU smoke run changes in a GPU config: length, batch, device; precision bf16.
SHORT = ["trainer.max_steps=2", "trainer.val_every_steps=2", "trainer.val_batches=1",
         "trainer.accelerator=cpu", "trainer.devices=1", "trainer.precision=bf16-mixed",
         "data.batch_size=16", "data.num_workers=0"]  # fmt: skip
FINETUNE_SHORT = [*SHORT, "head_warmup_steps=1", "val_jets=null", "early_stopping_patience=null"]


def _gpu_stages() -> dict[str, tuple[tuple[str, list[str]], tuple[str, list[str]]]]:
    """name → ((pretrain config, overrides), (finetune config, overrides)) of every GPU setup:
    the `base` configs and each study's `_gpu` config."""
    stages = {"base": (("base", []), ("base", []))}
    for name, study in STUDIES.items():
        config_class, _ = study.load()
        path = packaged_config_path("studies", f"{name.replace('-', '_')}_gpu.yaml")
        config = load_study_config(config_class, path)
        stages[f"{name}_gpu"] = (
            (config.pretrain.config, list(config.pretrain.overrides)),
            (config.finetune.config, list(config.finetune.overrides)),
        )
    return stages


@pytest.fixture(scope="module")
def vqvae(skim_dir, tmp_path_factory):
    """The packaged (GPU-scale) VQ-VAE tokenizer config, two steps in bf16 on the CPU."""
    overrides = [o for o in SHORT if not o.startswith("data.num")] + ["data.limit_val_jets=32"]
    out = tmp_path_factory.mktemp("vqvae") / "tok"
    run_tokenizer("vqvae", skim_dir, out, overrides=overrides, show_progress=False)
    return out


@pytest.mark.parametrize("name", sorted(_gpu_stages()))
def test_gpu_config_runs_in_bf16_and_exports(name, skim_dir, vqvae, tmp_path):
    from hepmpm.export import export_tagger

    (pretrain, pre_overrides), (finetune, ft_overrides) = _gpu_stages()[name]
    metrics = run_pretrain(
        pretrain, skim_dir, tmp_path / "pre", tokenizer_dir=vqvae,
        overrides=[*pre_overrides, *SHORT, "probe.skim=null"], show_progress=False,
    )  # fmt: skip
    assert metrics["steps"] == 2
    result = run_finetune(
        finetune, skim_dir, tmp_path / "ft", backbone_dir=tmp_path / "pre", mode="finetune",
        overrides=[*ft_overrides, *FINETUNE_SHORT], show_progress=False,
    )  # fmt: skip
    assert result["steps"] == 2 and 0 <= result["test"]["accuracy"] <= 1
    report = export_tagger(tmp_path / "ft", tmp_path / "tagger.onnx")
    assert report.worst < 1e-4  # onnxruntime (float32) vs torch, checked by the export itself
