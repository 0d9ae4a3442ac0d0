"""Tag FatJets with an exported hepmpm model inside a coffea analysis; plot score distributions.

    python examples/analysis_with_tagger.py --model model.onnx --out plots \\
        samples/qcd samples/hbb            # folders (dataset = folder name) or ROOT files
    python examples/analysis_with_tagger.py --model model.onnx --fileset fileset.json --out plots

What to copy into an analysis: a coffea ``Runner`` over a fileset with
:class:`hepmpm.processors.tagger.TaggerProcessor` (it selects FatJets and builds the model's
inputs with the same code as the training skim), then the ``hist.Hist`` it returns. Writes
``score_<class>.png`` (the score of each chosen output, one line per dataset, unit area, CMS
style) and, with ``--scores``, per-jet parquet scores under ``OUT/scores``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import hist
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from hepmpm.processors.tagger import TaggerProcessor


def make_fileset(inputs: list[Path], fileset_json: Path | None) -> dict:
    """coffea fileset: ``{dataset: {"files": {path: "Events"}}}``."""
    if fileset_json:
        return json.loads(fileset_json.read_text())
    fileset: dict[str, dict] = {}
    for item in inputs:
        files = sorted(item.glob("*.root")) if item.is_dir() else [item]
        dataset = item.name if item.is_dir() else item.parent.name
        entry = fileset.setdefault(dataset, {"files": {}})
        entry["files"].update({str(f.resolve()): "Events" for f in files})
    return fileset


def plot_scores(score: hist.Hist, class_name: str, out: Path) -> Path:
    """Unit-area score distribution of ``class_name`` for every dataset."""
    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots()
    for dataset in score.axes["dataset"]:
        h = score[{"dataset": dataset, "cls": class_name}]
        if h.sum() > 0:
            mplhep.histplot(h, ax=ax, density=True, label=dataset)
    ax.set_xlabel(f"hepmpm score {class_name}")
    ax.set_ylabel("Jets (unit area)")
    ax.set_yscale("log")
    ax.legend()
    mplhep.cms.label(data=False, ax=ax, rlabel="")
    path = out / f"score_{class_name}.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", type=Path, help="ROOT files or folders of them")
    parser.add_argument("--fileset", type=Path, help="coffea fileset JSON instead of inputs")
    parser.add_argument("--model", type=Path, required=True, help="hepmpm export output")
    parser.add_argument("--out", type=Path, default=Path("tagger_plots"))
    parser.add_argument("--classes", help="outputs to plot, e.g. QCD,Hbb (default: all)")
    parser.add_argument("--workers", type=int, default=1, help="processes (1: iterative)")
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--scores", action="store_true", help="also write per-jet parquet")
    parser.add_argument("--tiny", action="store_true", help="2 chunks of 50 events (a test)")
    args = parser.parse_args()
    if not args.inputs and not args.fileset:
        parser.error("give ROOT files/folders or --fileset")

    args.out.mkdir(parents=True, exist_ok=True)
    tagger = TaggerProcessor(args.model, scores_dir=args.out if args.scores else None)
    executor = (
        processor.FuturesExecutor(workers=args.workers)
        if args.workers > 1
        else processor.IterativeExecutor()
    )
    runner = processor.Runner(
        executor=executor,
        schema=NanoAODSchema,
        chunksize=50 if args.tiny else args.chunksize,
        maxchunks=2 if args.tiny else None,
    )
    output = runner(make_fileset(args.inputs, args.fileset), processor_instance=tagger)

    for dataset, counts in output["counts"].items():
        print(f"{dataset}: {counts['jets_tagged']} jets tagged of {counts['jets_seen']}")
    classes = args.classes.split(",") if args.classes else tagger.class_names
    for name in classes:
        print(f"wrote {plot_scores(output['hists']['score'], name, args.out)}")


if __name__ == "__main__":
    main()
