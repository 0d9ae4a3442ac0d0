"""Pre-train on unlabelled collision data, fine-tune on labelled simulation, compare domains.

    python examples/pretrain_on_data.py --data fileset_2024.json --sim samples/sim --out work
    python examples/pretrain_on_data.py --out work --tiny     # makes its own data and sim

``--data``: NanoAOD/PFNano ROOT files, folders or a coffea fileset of *collision data* (no labels
are read); ``--sim``: labelled simulation (``FatJet_truthLabel``, e.g. from ``hepmpm
generate``). Without them the script generates a small ``data``-preset sample (shifted generator
and detector, a stand-in for real data) and a ``sim`` one. Then, with the library calls an
analysis would make:

1. skim both into parquet shards (coffea ``Runner``);
2. fit a VQ-VAE tokenizer and pre-train the backbone by masked particle modeling on ``data``;
3. fine-tune on labelled ``sim``, and train the same tagger from scratch for comparison;
4. score both taggers on the ``sim`` test split and on whatever truth ``data`` carries (the
   generated stand-in keeps it; real data has none, and that row is skipped).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hepmpm.data.index import JetIndex
from hepmpm.evaluation.scoring import evaluate_tagger
from hepmpm.generate.preset import load_preset
from hepmpm.generate.sample import SampleRequest, generate_sample
from hepmpm.models.store import load_tagger
from hepmpm.skim import SkimRequest, run_skim
from hepmpm.training.finetune import run_finetune
from hepmpm.training.pretrain import run_pretrain
from hepmpm.training.tokenizer import run_tokenizer

CLASSES = ["QCD", "Wqq", "Tbqq"]


def generate(preset: str, jets_per_class: int, out: Path) -> Path:
    """A labelled sample of CLASSES with the given generator preset."""
    request = SampleRequest(
        preset=load_preset(preset),
        classes=tuple(CLASSES),
        jets_per_class=jets_per_class,
        seed=1 if preset == "sim" else 2,
        naming="pfnano",
        out=out,
        workers=2,
    )
    generate_sample(request, show_progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=[], help="collision data (unlabelled)")
    parser.add_argument("--sim", nargs="*", default=[], help="labelled simulation")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="seconds-scale settings (tests)")
    args = parser.parse_args()

    size = "tiny" if args.tiny else "small"
    steps = 40 if args.tiny else 2000
    jets = 40 if args.tiny else 1000
    data_inputs = args.data or [generate("data", jets, args.out / "samples" / "data")]
    sim_inputs = args.sim or [generate("sim", jets, args.out / "samples" / "sim")]

    # 1. Skim: the same coffea processor for data and simulation.
    for name, inputs in (("data", data_inputs), ("sim", sim_inputs)):
        run_skim(SkimRequest(inputs=inputs, out=args.out / "skims" / name, domain=name))
    data_skim, sim_skim = args.out / "skims" / "data", args.out / "skims" / "sim"

    # 2. Tokenizer and masked particle pre-training on data: no label is read.
    run_tokenizer(
        "tiny", data_skim, args.out / "tokenizer", overrides=[f"trainer.max_steps={steps}"]
    )
    run_pretrain(
        size, data_skim, args.out / "pretrain", tokenizer_dir=args.out / "tokenizer",
        overrides=[f"trainer.max_steps={steps}", f"trainer.val_every_steps={steps // 2}"],
    )  # fmt: skip

    # 3. Fine-tune on simulation, and the same tagger from scratch.
    taggers = {}
    for mode in ("finetune", "scratch"):
        out = args.out / f"tagger_{mode}"
        run_finetune(
            size, sim_skim, out, backbone_dir=args.out / "pretrain", mode=mode,
            classes=CLASSES, overrides=[f"trainer.max_steps={steps}"],
        )  # fmt: skip
        taggers[mode] = load_tagger(out)

    # 4. Each tagger on the sim test split and on data (where the data carries truth).
    data_index = JetIndex.from_skim(data_skim)
    has_truth = bool((data_index.labels >= 0).any())
    print(f"{'tagger':10s} {'domain':6s} {'accuracy':>9s} {'macro AUC':>10s}")
    for mode, (tagger, record) in taggers.items():
        domains = {"sim": sim_skim, **({"data": data_index} if has_truth else {})}
        for domain, skim in domains.items():
            metrics = evaluate_tagger(tagger, skim, record["labels"], split="test")
            print(f"{mode:10s} {domain:6s} {metrics['accuracy']:9.3f} {metrics['macro_auc']:10.3f}")
    if not has_truth:
        print("data carries no truth labels: the sim -> data change cannot be measured on it")


if __name__ == "__main__":
    main()
