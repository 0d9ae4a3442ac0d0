"""Generator throughput: jets/s on one core for QCD and a signal class, and where the time goes.

Also measures, in the same run, reading Pythia's event record with a plain Python loop over
particles (``for p in pythia.event``) against the batched ``Pythia.nextBatch`` path hepmpm uses,
and prints the ratio.

    python benchmarks/bench_generate.py [--jets 300] [--classes QCD,Tbqq] [--preset sim]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from hepmpm.generate.preset import GeneratorPreset, load_preset
from hepmpm.generate.processes import PROCESSES
from hepmpm.generate.pythia_events import PythiaGenerator
from hepmpm.generate.sample import FileTask, generate_file

STAGES = ("pythia_init", "pythia", "detector", "clustering", "selection", "writing")


def bench_class(class_name: str, n_jets: int, preset: GeneratorPreset, out: Path) -> None:
    task = FileTask(class_name, 0, n_jets, 1, "pfnano", str(out / f"{class_name}.root"), preset)
    start = time.perf_counter()
    summary = generate_file(task)
    total = time.perf_counter() - start
    stages = summary.seconds_by_stage
    shares = "  ".join(f"{s} {stages.get(s, 0.0) / total:5.1%}" for s in STAGES)
    print(
        f"{class_name:5s} {summary.jets:5d} jets from {summary.generated_events:6d} events in "
        f"{total:6.1f} s: {summary.jets / total:6.1f} jets/s/core "
        f"({summary.generated_events / total:6.1f} events/s)  |  {shares}"
    )


def bench_record_access(n_events: int, preset: GeneratorPreset) -> None:
    """Events/s reading final-state particles: Python loop per particle vs nextBatch."""
    loop_gen = PythiaGenerator(PROCESSES["QCD"], preset.pythia, seed=5)
    pythia = loop_gen._pythia  # the raw bindings, for the per-particle baseline
    start = time.perf_counter()
    for _ in range(n_events):
        pythia.next()
        rows = [
            (p.id(), p.px(), p.py(), p.pz(), p.e(), p.xProd(), p.yProd(), p.zProd())
            for p in pythia.event
            if p.isFinal()
        ]
    assert rows
    loop_rate = n_events / (time.perf_counter() - start)

    batch_gen = PythiaGenerator(PROCESSES["QCD"], preset.pythia, seed=5)
    start = time.perf_counter()
    done = 0
    while done < n_events:
        batch = batch_gen.next_batch(min(64, n_events - done))
        batch.visible_final_state()
        done += batch.n_events
    batch_rate = n_events / (time.perf_counter() - start)
    print(
        f"event record access, QCD: python loop {loop_rate:6.1f} events/s, "
        f"nextBatch + numpy {batch_rate:6.1f} events/s, ratio {batch_rate / loop_rate:4.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=300)
    parser.add_argument("--classes", default="QCD,Tbqq")
    parser.add_argument("--preset", default="sim")
    parser.add_argument("--record-events", type=int, default=200)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="preset override, e.g. --set 'pythia.settings=[\"PartonLevel:MPI = off\"]'",
    )
    args = parser.parse_args()
    preset = load_preset(args.preset, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        for class_name in args.classes.split(","):
            bench_class(class_name, args.jets, preset, Path(tmp))
    bench_record_access(args.record_events, preset)


if __name__ == "__main__":
    main()
