"""Throughput of the streaming dataset: jets/s into padded tensors on one core (num_workers=0).

    python benchmarks/bench_loader.py                 # makes a 200k-jet skim from a real one
    python benchmarks/bench_loader.py --data SKIM     # measures a skim folder you have
    python benchmarks/bench_loader.py --source SKIM   # replicate SKIM's jets (default: generate
                                                      # and skim a small sample first, ~1 min)

One epoch of ``JetDataset(split=None, batch_size=256, shuffle=True)`` is timed after a warm-up
epoch (so the shards are in the page cache); jets per CPU-second of this process is the
per-core figure, compared with the target of 20k jets/s per core. Torch and Arrow are held to
one thread. ``--profile`` prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from hepmpm.data import JetDataset
from hepmpm.data.shards import JET_COLUMNS, JetRows, particle_features, write_shard

TARGET = 20_000  # jets/s per core


def make_source(work: Path) -> Path:
    """Generate a small labelled sample (all classes) and skim it: a real skim folder."""
    from hepmpm.generate.preset import load_preset
    from hepmpm.generate.sample import SampleRequest, generate_sample
    from hepmpm.jetclass import CLASS_NAMES
    from hepmpm.skim import SkimRequest, run_skim

    sample = work / "sample"
    request = SampleRequest(
        preset=load_preset("sim"),
        classes=tuple(CLASS_NAMES),
        jets_per_class=50,
        seed=11,
        naming="pfnano",
        out=sample,
        jets_per_file=5000,
        workers=2,
    )
    generate_sample(request, show_progress=False)
    run_skim(SkimRequest(inputs=[sample], out=work / "source"), show_progress=False)
    return work / "source"


def replicate(source: Path, out: Path, n_jets: int, jets_per_shard: int = 50_000) -> Path:
    """A skim folder of ``n_jets`` jets: ``source``'s rows repeated (event numbers shifted so
    every jet has its own identity), written with ``write_shard``."""
    manifest = json.loads((source / "manifest.json").read_text())
    tables = [pq.read_table(source / s["path"]) for s in manifest["shards"]]
    table = pa.concat_tables(tables)
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in JET_COLUMNS}
    flat, offsets = particle_features(table.column("particles"))
    counts = np.diff(offsets)
    n_source = len(counts)
    manifest["shards"] = []
    for start in range(0, n_jets, jets_per_shard):
        take = np.arange(start, min(start + jets_per_shard, n_jets))
        rows = take % n_source
        shard_columns = {c: v[rows] for c, v in columns.items()}
        shard_columns["event"] = columns["event"][rows] + (take // n_source).astype(np.uint64) * (
            10**9
        )
        starts = offsets[rows]
        index = np.repeat(starts - np.cumsum(counts[rows]) + counts[rows], counts[rows])
        index += np.arange(len(index))
        path = f"shards/bench/bench_{start // jets_per_shard:04d}.parquet"
        write_shard(
            out / path, JetRows(columns=shard_columns, features=flat[index], counts=counts[rows])
        )
        manifest["shards"].append({"path": path, "dataset": "bench", "jets": len(take)})
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def run_epoch(dataset: JetDataset) -> tuple[int, int, float, float]:
    """Jets, particles, wall seconds and CPU seconds of one epoch."""
    jets = particles = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for batch in dataset:
        jets += batch.labels.shape[0]
        particles += int(batch.mask.sum())
    return jets, particles, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="skim folder to measure")
    parser.add_argument("--source", type=Path, help="real skim folder whose jets to replicate")
    parser.add_argument("--jets", type=int, default=200_000, help="jets to write (no --data)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--pad-to", type=int, default=None)
    parser.add_argument("--no-shuffle", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print the top of a profile")
    args = parser.parse_args()

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        data = args.data
        if data is None:
            source = args.source or make_source(Path(tmp))
            data = replicate(source, Path(tmp) / "bench", args.jets)
        dataset = JetDataset(
            data, None, args.batch_size, pad_to=args.pad_to, shuffle=not args.no_shuffle, seed=1
        )
        mean_particles = float(dataset._n_particles.mean())
        print(
            f"skim {data}: {dataset.n_jets} jets, {mean_particles:.1f} particles/jet, "
            f"{dataset.n_features} features; batch {args.batch_size}, pad_to {args.pad_to}, "
            f"shuffle {not args.no_shuffle}, num_workers 0"
        )
        run_epoch(dataset)  # warm-up: page cache, imports
        dataset.set_epoch(1)
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
        jets, particles, wall, cpu = run_epoch(dataset)
        if args.profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)
    per_core = jets / cpu
    print(
        f"{jets} jets ({particles / jets:.1f} particles/jet) in {wall:.2f} s wall, "
        f"{cpu:.2f} s CPU: {jets / wall:,.0f} jets/s wall, {per_core:,.0f} jets/s per core"
    )
    print(f"ratio to the {TARGET:,} jets/s per core target: {per_core / TARGET:.2f}")


if __name__ == "__main__":
    main()
