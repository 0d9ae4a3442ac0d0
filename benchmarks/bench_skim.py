"""Skim throughput: a bare uproot read of the skim's branches against the full ``hepmpm skim``.

Both paths read the same files, all entries. Throughput counts every FatJet in the files
(before any selection) per second of wall time, so ``skim / bare`` is the share of the pure-I/O
rate the skim keeps; the project's goal is a ratio of at least 0.5 (building the features costs
no more than reading the inputs). The skim is ``hepmpm.skim.run_skim`` as the CLI runs it
(iterative executor, one process, no progress bar, into a fresh temporary folder each time);
its wall time is split by timing wrappers around the coffea Runner call, the processor's stages
and the manifest step (a few function calls per chunk; negligible).

Warm-up policy: every measured path runs once untimed first (OS file cache warm for both paths,
imports and first-call costs paid), then the best of ``--repeat`` timed runs is reported.

    python benchmarks/bench_skim.py [--data DIR_OR_FILE ...] [--jets-per-class 4000]
        [--compression lzma:9,zlib:1] [--feature-set part17] [--chunksize 100000] [--repeat 3]
        [--workers 2] [--profile]

What a bare read costs depends on how the files are compressed, so the ratio is measured for
each compression of ``--compression`` on the same generated jets (same seed): LZMA level 9 is
what CMSSW writes NanoAOD with (and what the real PFNano file in ../shared/data has), ZLIB level
1 is uproot's default and the cheapest input to read, so the hardest case for the ratio. Without
``--data`` each sample is generated into a temporary folder first (not timed; ~1.5 min each on
2 cores); with ``--data`` the given files are measured as they are. One file per class of ~3700
events: real NanoAOD files hold 10^5 events, and with much smaller files the per-file costs
(opening each file three times, coffea's preprocessing, the manifest) dominate the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import awkward as ak
import hepmpm.processors.constituent_skim as skim_module
import uproot
from coffea.processor import executor as coffea_executor
from hepmpm.processors.constituent_skim import ConstituentSkim
from hepmpm.processors.jet_constituents import CANDIDATE_BRANCHES
from hepmpm.processors.running import build_fileset, make_runner
from loky import get_reusable_executor

import hepmpm.skim as run_module
from hepmpm.features import JetKinematics
from hepmpm.nanoaod import NAMINGS, NANOAOD_COMPRESSION, Naming
from hepmpm.skim import SkimRequest, run_skim

EVENT_BRANCHES = ("run", "luminosityBlock", "event")
JET_FIELDS = (*(f.name for f in fields(JetKinematics)), "truthLabel", "nConstituents")


@dataclass(frozen=True)
class Inputs:
    """The benchmark's files, the branches the skim reads from each, and what they hold."""

    files: list[str]
    branches: dict[str, list[str]]
    events: int
    jets: int
    particles: int  # jet constituents (entries of the FatJet-candidate link collection)


def _naming(keys: set[str]) -> Naming:
    for naming in NAMINGS.values():
        if f"{naming.link}_{naming.candidate_index}" in keys:
            return naming
    raise SystemExit("no PFNano or NanoAOD v15 constituents in the input")


def skim_branches(tree: Any) -> list[str]:
    """The branches :func:`read_jet_constituents` and ``ConstituentSkim`` read from ``tree``."""
    keys = set(tree.keys())
    naming = _naming(keys)
    wanted = [
        *EVENT_BRANCHES,
        # NanoEvents builds the jagged offsets from the counters (nFatJet, ...): read them too.
        *(f"n{collection}" for collection in ("FatJet", naming.link, naming.candidates)),
        *(f"FatJet_{f}" for f in JET_FIELDS),
        f"{naming.link}_jetIdx",
        f"{naming.link}_{naming.candidate_index}",
        *(f"{naming.candidates}_{b}" for b in CANDIDATE_BRANCHES.values()),
    ]
    return [b for b in wanted if b in keys]


def resolve_inputs(data: list[str]) -> Inputs:
    """Files as the skim sees them (through its own fileset builder), and their content."""
    fileset = build_fileset(data)
    files = [f for spec in fileset.values() for f in spec["files"]]
    branches, events, jets, particles = {}, 0, 0, 0
    for name in files:
        with uproot.open(name) as file:
            tree = file["Events"]
            branches[name] = skim_branches(tree)
            naming = _naming(set(tree.keys()))
            counts = tree.arrays(["FatJet_pt", f"{naming.link}_jetIdx"])
            events += tree.num_entries
            jets += int(ak.sum(ak.num(counts["FatJet_pt"])))
            particles += int(ak.sum(ak.num(counts[f"{naming.link}_jetIdx"])))
    return Inputs(files, branches, events, jets, particles)


def traced_branches(data: list[str], feature_set: str, tmp: Path) -> set[str]:
    """The branches coffea's access log records for one ``ConstituentSkim`` run (a cross-check)."""
    out = Path(tempfile.mkdtemp(prefix="trace-", dir=tmp))
    try:
        with make_runner("iterative", show_progress=False, savemetrics=True) as runner:
            _, metrics = runner(
                build_fileset(data), processor_instance=ConstituentSkim(out, feature_set)
            )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {column.rsplit("-", 1)[0] for column in metrics["columns"]}


def bare_read(inputs: Inputs) -> tuple[float, int]:
    """Read every entry of the skim's branches with uproot (awkward arrays): (seconds, events)."""
    events = 0
    start = time.perf_counter()
    for name in inputs.files:
        with uproot.open(name) as file:
            events += len(file["Events"].arrays(inputs.branches[name]))
    return time.perf_counter() - start, events


class StageTimer:
    """Wall time per named stage, collected by wrappers patched around the skim's functions."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, function: Callable) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return timed

    @contextlib.contextmanager
    def patched(self) -> Iterator[StageTimer]:
        """Time the Runner call, the processor's stages and the manifest step."""
        original_runner = run_module.make_runner

        @contextlib.contextmanager
        def make_runner(*args: Any, **kwargs: Any) -> Iterator[Callable]:
            with original_runner(*args, **kwargs) as runner:
                yield self.wrap("runner", runner)

        patches = [
            (run_module, "make_runner", make_runner),
            (run_module, "build_fileset", self.wrap("fileset", run_module.build_fileset)),
            (run_module, "_build_manifest", self.wrap("manifest", run_module._build_manifest)),
            (
                skim_module.FeatureStatistics,
                "from_particles",
                staticmethod(self.wrap("statistics", skim_module.FeatureStatistics.from_particles)),
            ),
            (ConstituentSkim, "process", self.wrap("process", ConstituentSkim.process)),
            (
                skim_module,
                "read_jet_constituents",
                self.wrap("read_constituents", skim_module.read_jet_constituents),
            ),
            (skim_module, "select_jets", self.wrap("select_features", skim_module.select_jets)),
            (skim_module, "write_shard", self.wrap("write_shard", skim_module.write_shard)),
        ]
        # vars(): restore descriptors (a classmethod) as they were, not as bound methods.
        saved = [(owner, name, vars(owner)[name]) for owner, name, _ in patches]
        try:
            for owner, name, replacement in patches:
                setattr(owner, name, replacement)
            yield self
        finally:
            for owner, name, value in saved:
                setattr(owner, name, value)


def skim_once(
    data: list[str], args: argparse.Namespace, executor: str, workers: int, tmp: Path
) -> tuple[float, dict[str, float], int]:
    """One ``run_skim`` into a fresh folder: (seconds, seconds by stage, jets written)."""
    out = Path(tempfile.mkdtemp(prefix="skim-", dir=tmp))
    request = SkimRequest(
        inputs=data,
        out=out,
        feature_set=args.feature_set,
        executor=executor,
        workers=workers,
        chunksize=args.chunksize,
    )
    timer = StageTimer()
    # coffea keeps file metadata (entries, uuid) in a process-wide cache: clear it, so that every
    # run pays the Runner's preprocessing as a fresh `hepmpm skim` does.
    coffea_executor.DEFAULT_METADATA_CACHE.clear()
    try:
        with timer.patched():
            start = time.perf_counter()
            manifest, _ = run_skim(request, show_progress=False)
            seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return seconds, dict(timer.seconds), sum(s["jets"] for s in manifest["shards"])


def best_of(repeat: int, run: Callable[[], tuple]) -> tuple:
    """Run once untimed (warm-up), then ``repeat`` times; the result (seconds, ...) that was
    fastest."""
    run()
    return min((run() for _ in range(repeat)), key=lambda result: result[0])


def print_breakdown(total: float, stages: dict[str, float]) -> None:
    """Where the skim's wall time goes (iterative executor: everything in this process)."""
    process = stages.get("process", 0.0)
    inner = sum(
        stages.get(s, 0.0)
        for s in ("read_constituents", "select_features", "statistics", "write_shard")
    )
    runner = stages.get("runner", 0.0)
    manifest = stages.get("manifest", 0.0)
    fileset = stages.get("fileset", 0.0)
    rows = [
        ("coffea Runner call", runner),
        ("  process(): read + group constituents (lazy I/O)", stages.get("read_constituents", 0)),
        ("  process(): select jets + features", stages.get("select_features", 0.0)),
        ("  process(): feature statistics (manifest)", stages.get("statistics", 0.0)),
        ("  process(): write parquet shard", stages.get("write_shard", 0.0)),
        ("  process(): rest (event ids, histograms, counts)", process - inner),
        ("  Runner outside process() (preprocess, open, accumulate)", runner - process),
        ("manifest", manifest),
        ("fileset check (opens every file)", fileset),
        ("rest (move shards, write manifest.json)", total - runner - manifest - fileset),
    ]
    print(f"\nskim wall time by stage (best run, {total:.3f} s):")
    for label, seconds in rows:
        print(f"  {label:58s} {seconds:8.3f} s  {seconds / total:6.1%}")


def profile_skim(data: list[str], args: argparse.Namespace, tmp: Path) -> None:
    """cProfile one whole iterative skim (warm, all chunks); print the top functions by own and
    by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    skim_once(data, args, "iterative", 1, tmp)
    profiler.disable()
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(args.profile_top)
        print(f"\n--- cProfile of one skim, sorted by {key} ---")
        print(text.getvalue().split("\n\n", 1)[-1].rstrip())


def generate_inputs(args: argparse.Namespace, compression: str, tmp: Path) -> list[str]:
    """The same jets (same seed) written with ``compression``, in a fresh folder."""
    from hepmpm.generate.preset import load_preset
    from hepmpm.generate.sample import SampleRequest, generate_sample

    out = tmp / f"sample-{compression.replace(':', '')}"
    request = SampleRequest(
        preset=load_preset("sim"),
        classes=tuple(args.classes.split(",")),
        jets_per_class=args.jets_per_class,
        seed=1,
        naming="pfnano",
        out=out,
        compression=compression,
        workers=args.gen_workers,
    )
    start = time.perf_counter()
    generate_sample(request, show_progress=False)
    print(
        f"generated {args.jets_per_class} jets per class of {args.classes} with {compression} "
        f"in {time.perf_counter() - start:.1f} s into {out} (not timed below)"
    )
    return [str(out)]


def file_compressions(inputs: Inputs) -> str:
    """The ROOT compression settings of the input files, e.g. ``LZMA(9)``."""
    found = set()
    for name in inputs.files:
        with uproot.open(name) as file:
            found.add(str(file.file.compression))
    return ", ".join(sorted(found))


def measure(data: list[str], args: argparse.Namespace, tmp: Path) -> float:
    """Bare read and skim of ``data``: print the table and the breakdown; return the ratio."""
    inputs = resolve_inputs(data)
    print(
        f"\n=== {len(inputs.files)} files compressed with {file_compressions(inputs)}: "
        f"{inputs.events} events, {inputs.jets} FatJets, {inputs.particles} jet constituents; "
        f"feature set {args.feature_set}, chunksize {args.chunksize}"
    )
    branches = sorted({b for names in inputs.branches.values() for b in names})
    print(f"branches read ({len(branches)}): {', '.join(branches)}")
    traced = traced_branches(data, args.feature_set, tmp)
    if traced == set(branches):
        print("  = the branches coffea's access log records for the skim")
    else:
        print(
            "  WARNING: coffea's access log differs: skim only "
            f"{sorted(traced - set(branches))}, bare only {sorted(set(branches) - traced)}"
        )
    print(
        f"warm-up: each path runs once untimed, then best of {args.repeat} timed runs "
        "(OS file cache warm for both)"
    )

    bare, events = best_of(args.repeat, lambda: bare_read(inputs))
    assert events == inputs.events, (events, inputs.events)
    skim, stages, written = best_of(args.repeat, lambda: skim_once(data, args, "iterative", 1, tmp))
    rows = [("bare uproot .arrays(skim branches)", bare), ("run_skim, iterative, 1 proc", skim)]
    if args.workers:
        # The skim keeps its loky pool between runs of one process: time a fresh `hepmpm skim`
        # (pool shut down first, worker start-up and imports timed) and a run that reuses it.
        def fresh_pool() -> tuple:
            get_reusable_executor(max_workers=args.workers).shutdown(wait=True)
            return skim_once(data, args, "futures", args.workers, tmp)

        fresh = best_of(args.repeat, fresh_pool)[0]
        kept = best_of(args.repeat, lambda: skim_once(data, args, "futures", args.workers, tmp))[0]
        rows.append((f"run_skim, futures, {args.workers} workers, new pool", fresh))
        rows.append((f"run_skim, futures, {args.workers} workers, pool kept", kept))

    print(f"\n{'path':48s} {'seconds':>8s} {'jets/s':>10s} {'particles/s':>12s} {'ratio':>6s}")
    for label, seconds in rows:
        print(
            f"{label:48s} {seconds:8.3f} {inputs.jets / seconds:10.0f} "
            f"{inputs.particles / seconds:12.0f} {bare / seconds:6.3f}"
        )
    print(
        f"(jets = all {inputs.jets} FatJets in the files; {written} passed the selection and "
        "were written; ratio = skim jets/s / bare uproot jets/s)"
    )
    print_breakdown(skim, stages)
    building = stages.get("select_features", 0.0) + stages.get("statistics", 0.0)
    print(
        f"feature building alone (selection, features, statistics) / bare read: "
        f"{building / bare:.2f} (the skim's reading through coffea NanoEvents: "
        f"{stages.get('read_constituents', 0.0) / bare:.2f})"
    )
    print(f"skim / bare uproot throughput: {bare / skim:.3f} (goal >= 0.5)")
    return bare / skim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=None, help="ROOT files or folders of them")
    parser.add_argument("--classes", default="QCD,Wqq,Tbqq", help="to generate, without --data")
    parser.add_argument("--jets-per-class", type=int, default=4000, help="to generate")
    parser.add_argument("--gen-workers", type=int, default=2, help="generator processes")
    parser.add_argument(
        "--compression",
        default=f"{NANOAOD_COMPRESSION},zlib:1",
        help="comma-separated ROOT compressions to generate and measure, without --data",
    )
    parser.add_argument("--feature-set", default="part17", choices=("part17", "mpm7id"))
    parser.add_argument("--chunksize", type=int, default=100_000, help="events per chunk")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the best is shown")
    parser.add_argument(
        "--workers", type=int, default=0, help="also time the futures executor with N workers"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one iterative skim")
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-skim-") as tmp_name:
        tmp = Path(tmp_name)
        if args.data:
            samples = {"as given": args.data}
        else:
            samples = {c: generate_inputs(args, c, tmp) for c in args.compression.split(",")}
        ratios = {name: measure(data, args, tmp) for name, data in samples.items()}
        print("\nskim / bare uproot throughput by input compression (goal >= 0.5):")
        for name, ratio in ratios.items():
            print(f"  {name:10s} {ratio:.3f}")
        if args.profile:
            profile_skim(next(iter(samples.values())), args, tmp)


if __name__ == "__main__":
    main()
