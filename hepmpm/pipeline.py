"""The cached, resumable steps the quickstart and the studies both run: generate a sample →
skim it → (fit a tokenizer) → pre-train → fine-tune → export → tag.

A :class:`Pipeline` holds how the steps report (progress bars, one line per step) and where
fine-tunings run: one after the other in this process, or on Dask's distributed scheduler
(a local cluster of single-threaded workers, or a running one by address), as the skim's
``dask`` executor does. Each step writes into the folder it is given and is complete when its
final file exists (the library writes that file last): a complete step is kept, an
interrupted one goes on (generation and skims keep complete files, training resumes from its
last checkpoint). Where each step's folder lies is its caller's layout.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepmpm.quiet import quiet_lightning

if TYPE_CHECKING:
    from hepmpm.generate.sample import SampleRequest
    from hepmpm.skim import SkimRequest
    from hepmpm.tag import TagRequest
    from hepmpm.training.pretrain import PretrainConfig
    from hepmpm.training.stages import Stage

#: The file a fine-tuning writes last: its run is complete once this exists.
FINETUNE_DONE = "metrics.json"


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning: the stage (config and overrides), the skim it reads, the folder it
    writes, the backbone it starts from (None: ``scratch``), the mode, the labelled jets
    (None: every training jet), the classes and the seed. Runs are independent of each other."""

    stage: Stage
    skim: Path
    out: Path
    backbone: Path | None
    mode: str
    labels: int | None
    classes: list[str]
    seed: int

    @property
    def done(self) -> Path:
        """The file whose existence means the run is complete."""
        return self.out / FINETUNE_DONE


def finetune(run: FinetuneRun, progress: bool) -> dict[str, Any]:
    """Run (or resume) ``run``; returns :func:`~hepmpm.training.finetune.run_finetune`'s
    metrics. The tagger (``tagger.pt``) is what later steps read: Lightning's checkpoints,
    which only resume, are dropped once the run is complete."""
    from hepmpm.training.finetune import run_finetune

    quiet_lightning()  # also in a Dask worker, where this is the first hepmpm call
    metrics = run_finetune(
        run.stage.config,
        run.skim,
        run.out,
        backbone_dir=None if run.mode == "scratch" else run.backbone,
        mode=run.mode,
        labels=run.labels,
        classes=run.classes,
        overrides=run.stage.overrides,
        seed=run.seed,
        resume=True,
        show_progress=progress,
    )
    shutil.rmtree(run.out / "checkpoints", ignore_errors=True)
    return metrics


@dataclass(frozen=True)
class Step:
    """A named piece of work; ``done`` is the file whose existence means it is complete
    (None: the work itself skips what is complete); ``run`` returns a one-line note."""

    title: str
    done: Path | None
    run: Callable[[], str]


@dataclass
class Pipeline:
    """The steps, run with one way of reporting and one place for the fine-tunings.

    ``progress``: progress bars; ``echo``: where step lines go; ``workers``: fine-tune on a
    local Dask cluster of this many single-threaded worker processes; ``scheduler``
    (``tcp://HOST:PORT``): on a running Dask cluster. Neither: one after the other, here.
    """

    progress: bool = True
    echo: Callable[[str], None] = print
    workers: int | None = None
    scheduler: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether fine-tunings run on Dask's distributed scheduler."""
        return self.workers is not None or self.scheduler is not None

    def run_steps(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in order, one numbered line each; a complete step is skipped."""
        quiet_lightning()  # keep the step lines readable
        for number, step in enumerate(steps, 1):
            prefix = f"[{number}/{len(steps)}] {step.title}"
            if step.done is not None and step.done.is_file():
                self.echo(f"{prefix}: done before, skipped")
                continue
            self.echo(f"{prefix} ...")
            t0 = time.perf_counter()
            note = step.run()
            self.echo(f"{prefix}: {note} ({time.perf_counter() - t0:.0f} s)")

    def generate(self, request: SampleRequest) -> dict[str, Any]:
        """Generate (or complete) a sample; its manifest (``generation.json``)."""
        from hepmpm.generate.sample import generate_sample

        return generate_sample(request, show_progress=self.progress)

    def skim(self, request: SkimRequest) -> dict[str, Any]:
        """Skim (a skim complete with the same inputs is kept); its manifest."""
        from hepmpm.skim import run_skim

        manifest, _ = run_skim(request, show_progress=self.progress)
        return manifest

    def tokenizer(self, stage: Stage, skim: Path, out: Path) -> Path:
        """Fit the tokenizer of ``stage`` on ``skim`` into ``out``, kept once its
        ``tokenizer.json`` exists."""
        from hepmpm.training.tokenizer import load_tokenizer_config, run_tokenizer

        if not (out / "tokenizer.json").is_file():
            shutil.rmtree(out, ignore_errors=True)
            config = load_tokenizer_config(stage.config, stage.overrides)
            run_tokenizer(config, skim, out, resume=True, show_progress=self.progress)
        return out

    def random_backbone(self, stage: Stage, skim: Path, out: Path, seed: int) -> Path:
        """The backbone of the pre-training ``stage`` at random initialisation (``seed``) in
        ``out``, kept once its ``backbone.json`` exists."""
        from hepmpm.training.pretrain import save_random_backbone

        if not (out / "backbone.json").is_file():
            save_random_backbone(stage.config, skim, out, overrides=stage.overrides, seed=seed)
        return out

    def pretrain(
        self,
        config: str | Path | PretrainConfig,
        skim: Path,
        out: Path,
        overrides: Sequence[str] = (),
        init: str | None = None,
        tokenizer: Path | None = None,
    ) -> dict[str, Any] | None:
        """Pre-train on ``skim`` (labels unused) into ``out``, resuming from its last
        checkpoint; its metrics, or None when ``backbone.json`` says it was complete."""
        from hepmpm.training.pretrain import run_pretrain

        if (out / "backbone.json").is_file():
            return None
        return run_pretrain(
            config,
            skim,
            out,
            overrides=list(overrides),
            tokenizer_dir=tokenizer,
            init=init,
            resume=True,
            show_progress=self.progress,
        )

    def finetune(self, runs: Sequence[FinetuneRun]) -> list[dict[str, Any]]:
        """The metrics of every run in ``runs``, in order: a complete one's are read back,
        the others are run (on Dask when the pipeline is distributed; the same numbers: each
        run is seeded and single-threaded either way)."""
        todo = [run for run in runs if not run.done.is_file()]
        if len(todo) > 1 and self.distributed:
            self._finetune_on_dask(todo)
        else:
            for run in todo:
                finetune(run, self.progress)
        return [json.loads(run.done.read_text()) for run in runs]

    def _finetune_on_dask(self, runs: Sequence[FinetuneRun]) -> None:
        from hepmpm.processors.running import dask_client

        where = self.scheduler or f"a local cluster of {self.workers} workers"
        self.echo(f"fine-tuning {len(runs)} runs on {where}")
        with dask_client(self.workers or 1, self.scheduler) as client:
            futures = [client.submit(finetune, run, False, pure=False) for run in runs]
            client.gather(futures)

    def export(self, tagger: Path, model: Path, layout: str) -> float:
        """Export the tagger folder ``tagger`` to the ONNX file ``model`` (validated); the
        largest onnxruntime-vs-torch probability difference."""
        from hepmpm.export import export_tagger

        model.parent.mkdir(parents=True, exist_ok=True)
        return export_tagger(tagger, model, layout=layout).worst

    def tag(self, request: TagRequest) -> dict[str, Any]:
        """Tag ``request.inputs`` from scratch (a tagging run is short and writes its summary
        last: an interrupted one starts over); the run's summary."""
        from hepmpm.tag import run_tag

        shutil.rmtree(request.out, ignore_errors=True)
        summary, _ = run_tag(request, show_progress=self.progress)
        return summary
