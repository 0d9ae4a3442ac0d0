"""Generate a labelled jet sample: Pythia 8 -> detector -> FastJet -> NanoAOD-style ROOT files.

The sample is split into files of at most ``jets_per_file`` jets per class. Each file has its own
seed, derived from (seed, class, file index) with numpy's ``SeedSequence``, so the output does not
depend on how many worker processes made it. A file is written under a temporary name and
renamed when complete; a re-run skips files that exist and were made with the same settings
(recorded in ``generation.json``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import queue as queue_module
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from hepmpm import __version__
from hepmpm.atomic import write_json_atomic
from hepmpm.config import StrictModel
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import holding_folder
from hepmpm.generate.detector import Detector
from hepmpm.generate.jets import cluster_jets, softdrop_mass
from hepmpm.generate.labelling import label_jets
from hepmpm.generate.nanoaod_writer import NanoAODBuilder
from hepmpm.generate.preset import GeneratorPreset
from hepmpm.generate.processes import PROCESSES
from hepmpm.generate.pythia_events import (
    MAX_PYTHIA_SEED,
    ChargeTable,
    PythiaGenerator,
    check_pythia_settings,
)
from hepmpm.jetclass import CLASS_INDEX
from hepmpm.nanoaod import NAMINGS, NANOAOD_COMPRESSION, parse_compression
from hepmpm.records import settings_hash

#: Events per ``Pythia.nextBatch`` call. Part of the settings: the detector's random numbers are
#: drawn per batch, so changing it changes the sample.
EVENTS_PER_BATCH = 64
#: A file gives up if this many events in a row yield no jet (cuts that select nothing).
MAX_EVENTS_WITHOUT_JET = 20_000
MANIFEST_NAME = "generation.json"

ProgressCallback = Callable[[int], None]


class GeneratedSample(StrictModel):
    """The generator preset and size of a sample a study or the quickstart makes itself."""

    preset: Literal["sim", "data", "shift2"] = "sim"
    jets_per_class: int = Field(ge=1)


@dataclass(frozen=True)
class FileTask:
    """One output file: ``n_jets`` jets of ``class_name``."""

    class_name: str
    file_index: int
    n_jets: int
    seed: int
    naming: str
    path: str
    preset: GeneratorPreset
    compression: str = NANOAOD_COMPRESSION

    def seed_sequence(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(
            self.seed, spawn_key=(CLASS_INDEX[self.class_name], self.file_index)
        )

    @property
    def luminosity_block(self) -> int:
        """Unique per (class, file), so (run, luminosityBlock, event) is unique in a sample."""
        return CLASS_INDEX[self.class_name] * 10_000 + self.file_index + 1


@dataclass(frozen=True)
class FileSummary:
    path: str
    class_name: str
    jets: int
    events: int
    generated_events: int
    skipped: bool = False
    seconds_by_stage: dict[str, float] = field(default_factory=dict)


class StageTimer:
    """Wall time per stage (pythia_init, pythia, detector, clustering, selection, writing), s."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def generate_file(task: FileTask, progress: ProgressCallback | None = None) -> FileSummary:
    """Generate one file of ``task.n_jets`` labelled jets and write it atomically."""
    process = PROCESSES[task.class_name]
    label = CLASS_INDEX[task.class_name]
    seeds = task.seed_sequence()
    pythia_seed = int(seeds.generate_state(1)[0]) % MAX_PYTHIA_SEED + 1
    rng = np.random.default_rng(seeds.spawn(1)[0])
    timer = StageTimer()
    with timer("pythia_init"):
        generator = PythiaGenerator(process, task.preset.pythia, pythia_seed)
    charge_of = ChargeTable(generator)
    detector = Detector(task.preset.detector)
    jet_config = task.preset.jets
    builder = NanoAODBuilder(task.naming, task.preset.run_number, task.luminosity_block)

    generated = 0
    events_since_jet = 0
    while builder.n_jets < task.n_jets:
        with timer("pythia"):
            batch = generator.next_batch(EVENTS_PER_BATCH)
        event_numbers = np.arange(generated + 1, generated + batch.n_events + 1, dtype=np.uint64)
        generated += batch.n_events

        with timer("detector"):
            particles = batch.visible_particles(charge_of)
            candidates = detector.reconstruct(particles, batch.n_events, rng)
        with timer("clustering"):
            jets = cluster_jets(candidates, batch.n_events, jet_config)
        with timer("selection"):
            chosen = label_jets(batch, jets, process, label, jet_config)
            chosen = chosen[: task.n_jets - builder.n_jets]
        if len(chosen) == 0:
            events_since_jet += batch.n_events
            if events_since_jet >= MAX_EVENTS_WITHOUT_JET:
                raise HepmpmError(
                    f"{task.class_name}: no jet passed the preset's selection in "
                    f"{events_since_jet} events; check the preset's jets and pythia sections"
                )
            continue
        events_since_jet = 0
        momentum = jets.momentum[chosen]
        constituents = jets.constituents[chosen]
        with timer("clustering"):
            msoftdrop = softdrop_mass(candidates, constituents, jet_config)
        with timer("writing"):
            builder.add(
                event_numbers=event_numbers,
                jets={
                    "pt": np.asarray(momentum.pt, dtype=np.float32),
                    "eta": np.asarray(momentum.eta, dtype=np.float32),
                    "phi": np.asarray(momentum.phi, dtype=np.float32),
                    "mass": np.asarray(momentum.mass, dtype=np.float32),
                    "msoftdrop": msoftdrop.astype(np.float32),
                    "truthLabel": np.full(len(chosen), label, dtype=np.int32),
                },
                jet_event=jets.event[chosen],
                constituents=constituents,
                candidates=candidates,
            )
        if progress is not None:
            progress(len(chosen))
    with timer("writing"):
        builder.write(Path(task.path), task.compression)
    return FileSummary(
        task.path, task.class_name, builder.n_jets, builder.n_events, generated,
        seconds_by_stage=timer.seconds,
    )  # fmt: skip


@dataclass(frozen=True)
class SampleRequest:
    """What ``hepmpm generate`` was asked for."""

    preset: GeneratorPreset
    classes: tuple[str, ...]
    jets_per_class: int
    seed: int
    naming: str
    out: Path
    jets_per_file: int = 5000
    #: ROOT compression of the files, ``ALGORITHM:LEVEL``; by default CMSSW's for NanoAOD.
    compression: str = NANOAOD_COMPRESSION
    #: Generator processes (one file each at a time); not part of the files' settings.
    workers: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))  # a str from Python callers

    def validate(self) -> None:
        parse_compression(self.compression)
        if self.jets_per_class <= 0:
            raise HepmpmError(f"jets_per_class must be positive, got {self.jets_per_class}")
        if self.jets_per_file <= 0:
            raise HepmpmError(f"jets_per_file must be positive, got {self.jets_per_file}")
        if self.naming not in NAMINGS:
            raise HepmpmError(f"unknown naming {self.naming!r}; use one of {', '.join(NAMINGS)}")
        if not 0 <= self.seed < 2**63:
            raise HepmpmError(f"seed must be a non-negative integer, got {self.seed}")
        if self.workers < 1:
            raise HepmpmError(f"workers must be at least 1, got {self.workers}")

    def settings(self) -> dict:
        """Everything that determines the files' content (not the worker count)."""
        return {
            "preset": self.preset.model_dump(mode="json"),
            "jets_per_class": self.jets_per_class,
            "jets_per_file": self.jets_per_file,
            "seed": self.seed,
            "naming": self.naming,
            "compression": self.compression,
            "events_per_batch": EVENTS_PER_BATCH,
        }

    def settings_hash(self) -> str:
        return settings_hash(self.settings())

    def tasks(self) -> list[FileTask]:
        tasks = []
        for class_name in self.classes:
            n_files = -(-self.jets_per_class // self.jets_per_file)  # ceil
            sizes = np.full(n_files, self.jets_per_class // n_files)
            sizes[: self.jets_per_class % n_files] += 1
            for index, size in enumerate(sizes):
                name = f"{self.preset.name}_{class_name}_{index:03d}.root"
                tasks.append(
                    FileTask(
                        class_name=class_name,
                        file_index=index,
                        n_jets=int(size),
                        seed=self.seed,
                        naming=self.naming,
                        path=str(self.out / name),
                        preset=self.preset,
                        compression=self.compression,
                    )
                )
        return tasks


def _prepare_output(request: SampleRequest) -> None:
    """Create the output folder (a one-line error where it cannot be written)."""
    try:
        request.out.mkdir(parents=True, exist_ok=True)
        probe = request.out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise HepmpmError(
            f"output directory {request.out} is not writable: {err.strerror}"
        ) from None


def _previous_manifest(request: SampleRequest) -> dict:
    """What the folder already holds: the manifest of a sample of the same settings, or none;
    one of other settings is refused."""
    manifest_path = request.out / MANIFEST_NAME
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("settings_hash") != request.settings_hash():
            raise HepmpmError(
                f"{request.out} already holds a sample generated with other settings "
                f"(see {manifest_path}); use a new --out or the same settings to resume"
            )
        return manifest
    return {"files": {}}


def _write_manifest(request: SampleRequest, summaries: dict[str, FileSummary]) -> dict:
    manifest = {
        "hepmpm_version": __version__,
        "settings_hash": request.settings_hash(),
        "settings": request.settings(),
        "files": {
            Path(s.path).name: {
                "class": s.class_name,
                "label": CLASS_INDEX[s.class_name],
                "jets": s.jets,
                "events": s.events,
                "generated_events": s.generated_events,
            }
            for s in sorted(summaries.values(), key=lambda s: s.path)
        },
    }
    write_json_atomic(request.out / MANIFEST_NAME, manifest)
    return manifest


def _run_in_pool(
    tasks: list[FileTask], workers: int, bar: tqdm, on_done: Callable[[FileSummary], None]
) -> None:
    """Run tasks in worker processes; per-batch progress comes back through a queue."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        progress_queue = manager.Queue()
        pending: set[Future] = {
            pool.submit(generate_file, task, progress_queue.put) for task in tasks
        }
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                with contextlib.suppress(queue_module.Empty):
                    while True:
                        bar.update(progress_queue.get_nowait())
                for future in done:
                    on_done(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def generate_sample(request: SampleRequest, show_progress: bool = True) -> dict:
    """Generate (or complete) a sample; returns the manifest written to ``generation.json``."""
    request.validate()
    workers = request.workers
    check_pythia_settings(request.preset.pythia)  # before any file or worker
    _prepare_output(request)
    # Two generations into one folder would mix their files: one holds it at a time.
    with holding_folder(request.out, "generation"):
        previous = _previous_manifest(request)
        tasks = request.tasks()
        summaries: dict[str, FileSummary] = {}
        todo = []
        for task in tasks:
            known = previous["files"].get(Path(task.path).name)
            if Path(task.path).exists() and known is not None:
                summaries[task.path] = FileSummary(
                    task.path, task.class_name, known["jets"], known["events"],
                    known["generated_events"], skipped=True,
                )  # fmt: skip
            else:
                todo.append(task)

        def on_done(summary: FileSummary) -> None:
            summaries[summary.path] = summary
            # Recorded after every file, so an interrupted run resumes where it stopped.
            _write_manifest(request, summaries)

        total = sum(t.n_jets for t in todo)
        with tqdm(total=total, unit="jet", desc="generate", disable=not show_progress) as bar:
            if workers == 1 or len(todo) <= 1:
                for task in todo:
                    on_done(generate_file(task, bar.update))
            else:
                _run_in_pool(todo, min(workers, len(todo)), bar, on_done)
        return _write_manifest(request, summaries)
