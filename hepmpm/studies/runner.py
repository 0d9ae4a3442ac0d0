"""``hepmpm study NAME``: the registry of studies, their packaged configs, and the entry point."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hepmpm.config import packaged_config_path, resolve_config_path
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import holding_folder
from hepmpm.pipeline import Pipeline
from hepmpm.quiet import quiet_lightning
from hepmpm.studies.common import StudyConfig, load_study_config


@dataclass(frozen=True)
class Study:
    """A study: its module (with ``run(config, out, pipeline)``) and config class."""

    module: str
    config_class: str
    report_only: bool = False  #: its ``run`` can write the tables of the runs done so far

    def load(self) -> tuple[type[StudyConfig], Callable[..., Path]]:
        module = importlib.import_module(f"hepmpm.studies.{self.module}")
        return getattr(module, self.config_class), module.run


#: Study names (the CLI's) → where they live; configs/studies/MODULE.yaml is the default config.
STUDIES: dict[str, Study] = {
    "label-efficiency": Study("label_efficiency", "LabelEfficiencyConfig", report_only=True),
    "cwola": Study("cwola", "CwolaConfig"),
    "sim-to-real-adaptation": Study(
        "sim_to_real_adaptation", "SimToRealAdaptationConfig", report_only=True
    ),
}


def get_study(name: str) -> Study:
    """The study called ``name``; an unknown name is an error listing the known ones."""
    if name not in STUDIES:
        raise HepmpmError(f"unknown study {name!r}; choose one of {', '.join(STUDIES)}")
    return STUDIES[name]


def default_config(name: str) -> Path:
    """The packaged config of study ``name`` (configs/studies/label_efficiency.yaml, ...)."""
    return packaged_config_path("studies", f"{get_study(name).module}.yaml")


def run_study(
    name: str,
    out: Path,
    config_path: Path | None = None,
    overrides: Sequence[str] = (),
    tiny: bool = False,
    show_progress: bool = True,
    echo: Callable[[str], None] = print,
    report_only: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Path:
    """Run (or complete) study ``name`` into ``out``; returns its ``summary.md``.

    ``config_path``: a study YAML, or the name of a packaged one (``label_efficiency_gpu``;
    default: the study's own packaged config); ``tiny``: merge its ``tiny:``
    section (seconds-scale samples and training); ``overrides``: ``a.b=value``, applied last.
    ``workers``: fine-tune on a local Dask cluster of this many single-threaded workers;
    ``scheduler`` (``tcp://HOST:PORT``): on a running Dask cluster (the same results as one
    after the other).
    """
    study = get_study(name)
    if report_only and not study.report_only:
        raise HepmpmError(f"--report-only: study {name!r} has no report-only mode")
    path = (
        default_config(name) if config_path is None else resolve_config_path(config_path, "studies")
    )
    config_class, run = study.load()
    config = load_study_config(config_class, path, overrides, tiny)
    pipeline = Pipeline(show_progress, echo, workers, scheduler)
    quiet_lightning()
    started = time.perf_counter()
    echo(f"study {name} ({path}{', tiny' if tiny else ''}) -> {out}")
    extra = {"report_only": True} if report_only else {}
    # A report-only pass reads a folder another run may be writing: it holds nothing.
    with holding_folder(Path(out), f"study {name}", enabled=not report_only):
        summary = run(config, Path(out), pipeline, **extra)
    echo(f"study {name} complete in {time.perf_counter() - started:.0f} s: {summary}")
    return summary
