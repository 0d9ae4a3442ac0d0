"""ONNX inference and tagging throughput, measured in one run.

1. **Model throughput**: onnxruntime (CPU) against torch eager (CPU, ``torch.no_grad``) on the
   same random realistic jets (:func:`hepmpm.export.random_jets.random_jets`: 36..64 particles,
   ~50 on average, padded to 64), at batch 1 (CMSSW tags one jet at a time: also the latency
   per jet) and batch 256. Jets/s and the ORT/torch ratio. Both use their default thread counts (all
   cores) unless ``--threads`` sets both; the model is a fresh tagger of ``--size`` (random
   weights do not change the cost).
2. **Tagging throughput**: ``hepmpm.tag.run_tag`` (the TaggerProcessor with the exported model,
   iterative executor, per-jet parquet scores on) against ``hepmpm.skim.run_skim`` (the skim
   alone, same files, same executor), in FatJets read per second of wall time.
3. **Tagging vs bare onnxruntime on the same jets**: the generated jets with their real
   multiplicities (the skim's shards: the same selection and features as the tagger), fed to
   a bare onnxruntime session the plain way, in file order, batches of 256 each padded to its
   longest jet; against ``OnnxTagger.tag_flat`` (the model step of the TaggerProcessor: sorted
   by multiplicity, batches padded per batch) and the whole ``run_tag`` (reading, selection,
   features, model, parquet), in tagged jets/s. The ratios tagging / bare onnxruntime are the
   figure of merit (goal >= 0.8 for the whole processor).

Every measured path runs once untimed first (imports, ORT session, file cache), then once timed.

    python benchmarks/bench_onnx.py [--size small] [--jets-per-class 1000] [--batches 20]
        [--single-jets 300] [--threads N] [--data DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hepmpm.export import OnnxTagger, export_tagger
from hepmpm.export.onnx_tagger import pad_batch
from hepmpm.export.random_jets import random_jets
from hepmpm.export.runtime import make_session, run_probs

from hepmpm.data.shards import particle_features
from hepmpm.features import get_feature_set
from hepmpm.jetclass import CLASS_NAMES
from hepmpm.models.backbone import BACKBONE_SIZES
from hepmpm.models.classifier import HeadConfig, JetTagger
from hepmpm.models.store import save_tagger
from hepmpm.skim import SkimRequest, run_skim
from hepmpm.tag import TagRequest, run_tag


def jets_per_second(run, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    run(*batches[0])  # warm-up
    start = time.perf_counter()
    for features, mask in batches:
        run(features, mask)
    return sum(len(m) for _, m in batches) / (time.perf_counter() - start)


def model_throughput(args: argparse.Namespace, work: Path) -> Path:
    feature_set = get_feature_set("part17")
    head = HeadConfig(heads=BACKBONE_SIZES[args.size].heads)
    tagger = JetTagger(feature_set, BACKBONE_SIZES[args.size], head, len(CLASS_NAMES)).eval()
    save_tagger(tagger, work / "finetune", list(CLASS_NAMES), list(range(10)), head)
    model = export_tagger(work / "finetune", work / "model.onnx").path
    if args.threads:
        torch.set_num_threads(args.threads)  # the benchmark's process only
    session = make_session(model, args.threads, providers=["CPUExecutionProvider"])

    def torch_run(features: np.ndarray, mask: np.ndarray) -> None:
        with torch.no_grad():
            tagger(torch.from_numpy(features), torch.from_numpy(mask > 0))

    def ort_run(features: np.ndarray, mask: np.ndarray) -> None:
        run_probs(session, features, mask, "hepmpm")

    print(f"model: {args.size} tagger ({sum(p.numel() for p in tagger.parameters())} parameters),"
          f" part17, torch threads {torch.get_num_threads()}")  # fmt: skip
    for batch, n_batches in ((1, args.single_jets), (256, args.batches)):
        batches = []
        for i in range(n_batches):
            features, mask = random_jets(feature_set, batch, 64, seed=i, min_particles=36)
            if batch == 1:  # one jet: its own length, as a producer would feed it
                width = int(mask.sum())
                features, mask = features[:, :width], mask[:, :width]
            batches.append((features, mask))
        rate_torch = jets_per_second(torch_run, batches)
        rate_ort = jets_per_second(ort_run, batches)
        line = (f"batch {batch:>3}: torch eager {rate_torch:8.0f} jets/s, onnxruntime "
                f"{rate_ort:8.0f} jets/s, ratio ort/torch {rate_ort / rate_torch:.2f}")  # fmt: skip
        if batch == 1:
            line += (f"; latency per jet: torch {1e3 / rate_torch:.2f} ms, "
                     f"onnxruntime {1e3 / rate_ort:.2f} ms")  # fmt: skip
        print(line)
    return model


def tagging_throughput(args: argparse.Namespace, work: Path, model: Path) -> tuple[Path, Path]:
    """Skim vs TaggerProcessor jets/s; returns the NanoAOD folder and the last skim."""
    if args.data:
        data = args.data
    else:
        from hepmpm.generate.preset import load_preset
        from hepmpm.generate.sample import SampleRequest, generate_sample

        data = work / "sample"
        generate_sample(
            SampleRequest(
                preset=load_preset("sim"),
                classes=("QCD", "Wqq", "Tbqq"),
                jets_per_class=args.jets_per_class,
                seed=1,
                naming="pfnano",
                out=data,
                jets_per_file=5000,
                workers=2,
            ),
            show_progress=False,
        )
    timings = {}
    for repeat in range(2):  # first untimed
        out_skim, out_tag = work / f"skim{repeat}", work / f"tag{repeat}"
        start = time.perf_counter()
        manifest, _ = run_skim(SkimRequest(inputs=[data], out=out_skim), show_progress=False)
        timings["skim"] = time.perf_counter() - start
        start = time.perf_counter()
        request = TagRequest(model=model, inputs=[data], out=out_tag, threads=args.threads)
        summary, _ = run_tag(request, show_progress=False)
        timings["tag"] = time.perf_counter() - start
    jets = sum(c["jets_seen"] for c in summary["counts"].values())
    assert jets == sum(c["jets_seen"] for c in manifest["counts"].values())
    rate = {k: jets / v for k, v in timings.items()}
    print(f"tagging {jets} generated jets: skim alone {rate['skim']:.0f} jets/s, "
          f"TaggerProcessor {rate['tag']:.0f} jets/s, ratio tag/skim "
          f"{rate['tag'] / rate['skim']:.2f}")  # fmt: skip
    return data, out_skim


def versus_bare_runtime(
    args: argparse.Namespace, work: Path, model: Path, data: Path, skim: Path
) -> None:
    """Bare onnxruntime (file order, batches of 256 padded to their longest jet) against the
    tagger's model step and the whole processor, on the skim's jets (real multiplicities).
    The three are timed in turn, ``--rounds`` times, best of each: on a shared machine the
    load changes between rounds, not within one."""
    import json

    import pyarrow.parquet as pq

    manifest = json.loads((skim / "manifest.json").read_text())
    parts = [particle_features(pq.read_table(skim / s["path"])["particles"])
             for s in manifest["shards"]]  # fmt: skip
    flat = np.concatenate([f for f, _ in parts])
    counts = np.concatenate([np.diff(o) for _, o in parts])
    starts = np.cumsum(counts) - counts
    session = make_session(model, args.threads, providers=["CPUExecutionProvider"])
    batches = [pad_batch(flat, starts[i : i + 256], counts[i : i + 256], 128)
               for i in range(0, len(counts), 256)]  # fmt: skip
    tagger = OnnxTagger(model, threads=args.threads, providers=["CPUExecutionProvider"])
    tagger.tag_flat(flat[: counts[:256].sum()], counts[:256])  # warm-up (session)
    bare, model_step, tag_rate = 0.0, 0.0, 0.0
    for repeat in range(args.rounds):
        bare = max(bare, jets_per_second(lambda f, m: run_probs(session, f, m, "hepmpm"), batches))
        start = time.perf_counter()
        tagger.tag_flat(flat, counts)
        model_step = max(model_step, len(counts) / (time.perf_counter() - start))
        start = time.perf_counter()
        request = TagRequest(model=model, inputs=[data], out=work / f"vs{repeat}",
                             threads=args.threads)  # fmt: skip
        summary, _ = run_tag(request, show_progress=False)
        tag_rate = max(tag_rate, len(counts) / (time.perf_counter() - start))
    assert sum(c["jets_tagged"] for c in summary["counts"].values()) == len(counts)
    width = np.mean([m.shape[1] for _, m in batches])
    print(f"{len(counts)} jets, {counts.mean():.1f} particles on average (median "
          f"{np.median(counts):.0f}, max {counts.max()}; bare batches padded to {width:.0f}): "
          f"bare onnxruntime {bare:.0f} jets/s; OnnxTagger (by multiplicity) {model_step:.0f} "
          f"jets/s, ratio {model_step / bare:.2f}; whole TaggerProcessor {tag_rate:.0f} jets/s, "
          f"ratio {tag_rate / bare:.2f}, {tag_rate / model_step:.2f} of its own model "
          "step")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(BACKBONE_SIZES), default="small")
    parser.add_argument("--batches", type=int, default=20, help="batches of 256 timed")
    parser.add_argument("--single-jets", type=int, default=300, help="batch-1 calls timed")
    # 3000 jets: a run's fixed costs (coffea's Runner, the output folder: ~0.2 s) no longer
    # weigh on the per-jet rates that an analysis of 1e5-1e7 jets sees.
    parser.add_argument("--jets-per-class", type=int, default=1000)
    parser.add_argument(
        "--threads", type=int, help="torch and onnxruntime threads (default: each one's own)"
    )
    parser.add_argument("--data", type=Path, help="NanoAOD folder/file (default: generate)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the bare-ORT comparison")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
    try:
        model = model_throughput(args, work)
        data, skim = tagging_throughput(args, work, model)
        versus_bare_runtime(args, work, model, data, skim)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
