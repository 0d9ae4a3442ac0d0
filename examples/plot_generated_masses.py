"""Generate a small labelled sample and plot the jet-mass distribution of each class.

    python examples/plot_generated_masses.py --jets-per-class 200 --out samples/demo

Writes NanoAOD-style files to --out, reads them back with coffea's NanoEvents (PFNano schema),
fills a ``hist`` histogram of the soft-drop mass per class and saves ``msoftdrop.png`` in the
CMS style of mplhep.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import awkward as ak
import hist
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mplhep
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from hepmpm.generate.preset import load_preset
from hepmpm.generate.sample import SampleRequest, generate_sample
from hepmpm.jetclass import CLASS_NAMES, parse_classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="all")
    parser.add_argument("--jets-per-class", type=int, default=200)
    parser.add_argument("--preset", default="sim")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("samples/demo"))
    args = parser.parse_args()

    request = SampleRequest(
        preset=load_preset(args.preset),
        classes=tuple(parse_classes(args.classes)),
        jets_per_class=args.jets_per_class,
        seed=1,
        naming="pfnano",
        out=args.out,
        workers=args.workers,
    )
    manifest = generate_sample(request)

    masses = hist.Hist(
        hist.axis.StrCategory([], name="label", label="class", growth=True),
        hist.axis.Regular(40, 0, 250, name="msd", label="Soft-drop mass [GeV]"),
    )
    for name, info in manifest["files"].items():
        events = NanoEventsFactory.from_root(
            {str(args.out / name): "Events"}, schemaclass=PFNanoAODSchema, mode="eager"
        ).events()
        masses.fill(label=CLASS_NAMES[info["label"]], msd=ak.flatten(events.FatJet.msoftdrop))

    plt.style.use(mplhep.style.CMS)
    fig, ax = plt.subplots()
    for label in masses.axes["label"]:
        mplhep.histplot(masses[{"label": label}], ax=ax, label=label, density=True)
    mplhep.cms.label(data=False, ax=ax, rlabel=f"{args.preset}, 13.6 TeV")
    ax.legend(ncol=2, fontsize="small")
    fig.savefig(args.out / "msoftdrop.png", dpi=100)
    print(f"wrote {args.out / 'msoftdrop.png'}")


if __name__ == "__main__":
    main()
