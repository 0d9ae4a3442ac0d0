"""A coffea analysis with a calibrated hepmpm tagger: working point, scale factors, variations.

    hepmpm tag --model model.onnx samples/sim --out tag_sim       # then the same for data, and
    hepmpm calibrate --sim tag_sim --data tag_data --signal Tbqq --working-points mistag=0.1 \\
                     --out calib
    python examples/calibrated_analysis.py --model model.onnx --calibration calib \\
        --working-point mistag0p1 --out plots samples/sim           # folders or ROOT files

What to copy into an analysis:

1. ``hepmpm.tag_fatjets(events, tagger)`` inside your own ``process``: the tagger's scores as a
   column of ``events.FatJet`` (same selection and features as the training skim; NaN for jets
   the model does not tag).
2. The working point from ``calibration.json``: the leading FatJet must be tagged and pass
   ``p_s / (p_s + p_B) >= threshold``.
3. The scale factor from ``scale_factors.json`` with correctionlib's evaluator, as the event
   weight: the signal-efficiency SF for truth-signal jets, the mistag SF for truth-background
   jets (1 for other jets and for data), with its ``up``/``down`` variations.
4. ``hist`` histograms filled with the weight of each variation (``systematic`` axis).

Writes ``OUT/mass_<working point>.png`` (leading-jet mass, nominal with the up/down band) and
prints the weighted yields.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import awkward as ak
import correctionlib
import hist
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
import numpy as np
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from hepmpm.export import OnnxTagger

import hepmpm
from hepmpm.evaluation.metrics import versus_background_score

VARIATIONS = ("nominal", "up", "down")


class CalibratedTagAnalysis(processor.ProcessorABC):
    """Events whose leading FatJet passes the working point, weighted by the tagging SF.

    ``calibration``: a ``hepmpm calibrate`` folder; ``working_point``: one of its working
    points (e.g. ``mistag0p1``). Returns the leading-jet mass per dataset and variation
    (weighted ``hist.Hist``), the weighted yields, and per selected jet its pT / GeV, |η|,
    truth label and weight per variation (``jets``, keyed by chunk).
    """

    def __init__(self, model: Path, calibration: Path, working_point: str) -> None:
        summary = json.loads((Path(calibration) / "calibration.json").read_text())
        by_name = {wp["name"]: wp for wp in summary["working_points"]}
        if working_point not in by_name:
            raise SystemExit(
                f"{calibration} has no working point {working_point!r}: {list(by_name)}"
            )
        wp = by_name[working_point]
        self.tagger = OnnxTagger(model)
        self.threshold = wp["threshold"]
        self.signal = self.tagger.class_names.index(summary["signal"])
        self.background = self.tagger.class_names.index(summary["background"])
        self.corrections = {p: wp["corrections"][p]["name"] for p in ("signal", "mistag")}
        # the JSON text travels to workers; the evaluator is built where it runs
        self.corrections_json = (Path(calibration) / summary["corrections_file"]).read_text()

    def process(self, events: ak.Array) -> dict[str, Any]:
        dataset = events.metadata["dataset"]
        scores = hepmpm.tag_fatjets(events, self.tagger)  # [events, FatJets, classes]
        flat = ak.to_numpy(ak.flatten(scores))
        d = versus_background_score(flat, self.signal, self.background)
        d[~np.isfinite(flat).all(axis=1)] = np.nan  # untagged jets never pass
        events["FatJet", "hepmpm_d"] = ak.unflatten(d, ak.num(events.FatJet))

        has_jet = ak.num(events.FatJet) > 0
        leading = ak.firsts(events.FatJet)
        selected = has_jet & ak.fill_none(leading.hepmpm_d >= self.threshold, False)
        jet = leading[selected]
        pt, abseta = ak.to_numpy(jet.pt), np.abs(ak.to_numpy(jet.eta))
        truth = ak.to_numpy(jet.truthLabel) if "truthLabel" in jet.fields else np.full(len(pt), -1)

        evaluator = correctionlib.CorrectionSet.from_string(self.corrections_json)
        weights = {}
        for variation in VARIATIONS:
            w = np.ones(len(pt))
            for panel, label in (("signal", self.signal), ("mistag", self.background)):
                is_class = truth == label
                sf = evaluator[self.corrections[panel]]
                w[is_class] = sf.evaluate(pt[is_class], abseta[is_class], variation)
            weights[variation] = w

        mass = hist.Hist(
            hist.axis.StrCategory([], growth=True, name="dataset"),
            hist.axis.StrCategory(list(VARIATIONS), name="systematic"),
            hist.axis.Regular(30, 0, 300, name="mass", label="leading FatJet mass [GeV]"),
            storage=hist.storage.Weight(),
        )
        for variation, w in weights.items():
            mass.fill(dataset=dataset, systematic=variation, mass=ak.to_numpy(jet.mass), weight=w)
        chunk = f"{events.metadata['filename']}:{events.metadata['entrystart']}"
        return {
            "mass": mass,
            "yields": {dataset: {v: float(w.sum()) for v, w in weights.items()}},
            "events": {dataset: len(events)},
            "jets": {chunk: {"pt": pt, "abseta": abseta, "label": truth, **weights}},
        }

    def postprocess(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def make_fileset(inputs: list[Path]) -> dict:
    """coffea fileset ``{dataset: {"files": {path: "Events"}}}`` (dataset = folder name)."""
    fileset: dict[str, dict] = {}
    for item in inputs:
        files = sorted(item.glob("*.root")) if item.is_dir() else [item]
        dataset = item.name if item.is_dir() else item.parent.name
        fileset.setdefault(dataset, {"files": {}})["files"].update(
            {str(f.resolve()): "Events" for f in files}
        )
    return fileset


def plot_mass(mass: hist.Hist, title: str, path: Path) -> Path:
    """Leading-jet mass per dataset, nominal with the SF up/down as a band."""
    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots()
    for dataset in mass.axes["dataset"]:
        nominal = mass[{"dataset": dataset, "systematic": "nominal"}]
        art = mplhep.histplot(nominal, ax=ax, label=f"{dataset} (nominal)")
        up, down = (mass[{"dataset": dataset, "systematic": v}].values() for v in ("up", "down"))
        ax.stairs(up, nominal.axes[0].edges, baseline=down, fill=True, alpha=0.3,
                  color=art[0].stairs.get_edgecolor(), label=f"{dataset} SF up/down")  # fmt: skip
    ax.set_title(title, fontsize=14, pad=22)
    ax.set_ylabel("Weighted events")
    ax.legend(fontsize=11)
    mplhep.cms.label(data=False, ax=ax, rlabel="")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="ROOT files or folders of them")
    parser.add_argument("--model", type=Path, required=True, help="hepmpm export output")
    parser.add_argument("--calibration", type=Path, required=True, help="hepmpm calibrate --out")
    parser.add_argument("--working-point", required=True, help="e.g. mistag0p1")
    parser.add_argument("--out", type=Path, default=Path("calibrated_plots"))
    parser.add_argument("--workers", type=int, default=1, help="processes (1: iterative)")
    parser.add_argument("--chunksize", type=int, default=100_000)
    args = parser.parse_args()

    analysis = CalibratedTagAnalysis(args.model, args.calibration, args.working_point)
    executor = (
        processor.FuturesExecutor(workers=args.workers)
        if args.workers > 1
        else processor.IterativeExecutor()
    )
    runner = processor.Runner(executor=executor, schema=NanoAODSchema, chunksize=args.chunksize)
    output = runner(make_fileset(args.inputs), processor_instance=analysis)
    for dataset, yields in output["yields"].items():
        print(f"{dataset}: {output['events'][dataset]} events; passing {args.working_point}, "
              f"weighted: " + ", ".join(f"{v} {y:.2f}" for v, y in yields.items()))  # fmt: skip
    title = f"leading FatJet passing {args.working_point}"
    print(f"wrote {plot_mass(output['mass'], title, args.out / f'mass_{args.working_point}.png')}")


if __name__ == "__main__":
    main()
