"""The training progress bar counts optimizer steps out of max_steps (runs are step-based:
Lightning's own bars printed ``Epoch 199/-2``, from ``max_epochs=-1``)."""

from __future__ import annotations

import re

from hepmpm.training.pretrain import run_pretrain

STEPS = 6
TINY = [
    "mpm.targets={regression: 1.0, id: 1.0}",
    f"trainer.max_steps={STEPS}",
    "trainer.val_every_steps=3",
    "trainer.val_batches=1",
    "data.batch_size=64",  # several epochs of the small skim in 6 steps
    "trainer.cpu_threads=1",
]


def test_the_bar_counts_steps_of_max_steps(skim_dir, tmp_path, capfd):
    run_pretrain("tiny", skim_dir, tmp_path / "run", overrides=TINY, show_progress=True)
    captured = capfd.readouterr()
    shown = captured.out + captured.err
    assert "Epoch" not in shown
    assert "/-" not in shown
    assert re.search(rf"Training: 100%.*\b{STEPS}/{STEPS}\b", shown), shown[-2000:]
    # A resumed run continues the count from its checkpoint's step.
    more = [*TINY, f"trainer.max_steps={2 * STEPS}"]
    run_pretrain("tiny", skim_dir, tmp_path / "run", overrides=more, resume=True)
    shown = capfd.readouterr().out
    assert re.search(rf"\b{2 * STEPS}/{2 * STEPS}\b", shown)
    assert "Epoch" not in shown


def test_no_bar_without_progress(skim_dir, tmp_path, capfd):
    run_pretrain("tiny", skim_dir, tmp_path / "run", overrides=TINY, show_progress=False)
    captured = capfd.readouterr()
    assert "Training" not in captured.out + captured.err
