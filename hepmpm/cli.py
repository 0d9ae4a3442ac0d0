"""``hepmpm <command>``: a thin command line over the library.

Each subcommand parses its flags and calls one library function; errors caused by the input
(:class:`~hepmpm.errors.HepmpmError`) are printed as one line, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hepmpm import __version__
from hepmpm.errors import HepmpmError, one_line_reason
from hepmpm.nanoaod import NANOAOD_COMPRESSION
from hepmpm.quiet import quiet_lightning

if TYPE_CHECKING:
    from hepmpm.export.onnx_export import ExportReport
    from hepmpm.processors.jet_selection import JetSelection


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def packaged_names(folder: str) -> list[str]:
    """Names of the configs shipped in ``configs/FOLDER`` (``compact``, ``tiny``, ...), read
    from the installed package so that help strings name what ships. (Not
    :func:`hepmpm.config.packaged_configs`: importing pydantic would slow every ``--help``.)"""
    from importlib import resources

    folder_files = resources.files("hepmpm.configs").joinpath(folder).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in folder_files if f.name.endswith(".yaml"))


def _packaged(folder: str) -> str:
    return ", ".join(packaged_names(folder))


def _add_overrides(parser: argparse.ArgumentParser, what: str, example: str) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help=f"override a {what} value, e.g. --set {example}",
    )  # fmt: skip


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _add_runner(parser: argparse.ArgumentParser) -> None:
    """How a coffea Runner spreads the chunks (skim, tag)."""
    parser.add_argument("--executor", choices=["iterative", "futures", "dask"], default="iterative")
    parser.add_argument(
        "--workers", type=_positive_int, default=1, help="processes (futures, local dask)"
    )
    parser.add_argument("--chunksize", type=_positive_int, default=100_000, help="events per chunk")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="remote Dask scheduler")


def _add_jet_selection(parser: argparse.ArgumentParser, max_particles_help: str) -> None:
    """The FatJet selection shared by the skim and the tagger."""
    parser.add_argument("--min-pt", type=float, default=200.0, metavar="GEV", help="jet pT cut")
    parser.add_argument("--max-eta", type=float, default=2.4, help="jet |eta| cut")
    parser.add_argument("--min-constituents", type=_positive_int, default=2)
    parser.add_argument("--max-particles", type=_positive_int, help=max_particles_help)


def _jet_selection(args: argparse.Namespace, max_particles: int) -> JetSelection:
    from hepmpm.processors.jet_selection import JetSelection

    return JetSelection(
        min_pt=args.min_pt,
        max_eta=args.max_eta,
        min_constituents=args.min_constituents,
        max_particles=max_particles,
    )


def _add_generate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "generate",
        help="generate labelled JetClass-like jets (Pythia8 + FastJet + detector) as NanoAOD",
        description=(
            "Generate jets of the ten JetClass classes with Pythia 8, a parametric CMS-like "
            "detector and FastJet anti-kT R=0.8 (500 < pT < 1000 GeV, |eta| < 2), written as "
            "NanoAOD-style ROOT files with FatJet_truthLabel."
        ),
    )
    parser.add_argument(
        "--preset", default="sim",
        help=f"{_packaged('generate')}, or the path of a preset YAML (default: sim)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", default="all", help="comma-separated classes, e.g. QCD,Hbb, or 'all'"
    )
    parser.add_argument("--jets-per-class", type=_positive_int, required=True, metavar="N")
    parser.add_argument("--seed", type=int, default=1, help="master seed (default: 1)")
    parser.add_argument(
        "--workers", type=_positive_int, default=1, help="worker processes (default: 1)"
    )
    parser.add_argument(
        "--naming", choices=["pfnano", "nanoaod-v15"], default="pfnano",
        help="branch naming of the constituents (default: pfnano)",
    )  # fmt: skip
    parser.add_argument(
        "--jets-per-file", type=_positive_int, default=5000,
        help="maximum jets per output file (default: 5000)",
    )  # fmt: skip
    parser.add_argument(
        "--compression", default=NANOAOD_COMPRESSION,
        help="ROOT compression ALGORITHM:LEVEL (zlib, lzma, lz4, zstd) or none "
        f"(default: {NANOAOD_COMPRESSION}, what CMSSW writes NanoAOD with)",
    )  # fmt: skip
    _add_overrides(parser, "preset", "detector.hcal.energy_scale=0.95")
    _add_progress(parser)
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.set_defaults(run=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    from hepmpm.generate.preset import load_preset
    from hepmpm.generate.sample import SampleRequest, generate_sample
    from hepmpm.jetclass import parse_classes

    request = SampleRequest(
        preset=load_preset(args.preset, args.overrides),
        classes=tuple(parse_classes(args.classes)),
        jets_per_class=args.jets_per_class,
        seed=args.seed,
        naming=args.naming,
        out=args.out,
        jets_per_file=args.jets_per_file,
        compression=args.compression,
        workers=args.workers,
    )
    manifest = generate_sample(request, show_progress=not args.no_progress)
    files = manifest["files"]
    jets = sum(f["jets"] for f in files.values())
    print(f"wrote {jets} jets in {len(files)} files to {args.out}")
    return 0


def _add_skim(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "skim",
        help="NanoAOD/PFNano FatJets -> parquet shards of particle features (coffea)",
        description=(
            "Run the ConstituentSkim coffea processor over ROOT files, folders of them or coffea "
            "fileset JSON files, writing one parquet shard per chunk and a manifest.json."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_FILESET")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    _add_runner(parser)
    parser.add_argument("--feature-set", choices=["part17", "mpm7id"], default="part17")
    _add_jet_selection(parser, "keep the N hardest particles (default: 128)")
    parser.add_argument(
        "--domain", help="domain of plain ROOT inputs (default: a generated folder's preset)"
    )
    parser.add_argument(
        "--require-impact-parameters", action="store_true",
        help="fail on files without d0/dz instead of filling zeros (recorded in the manifest)",
    )  # fmt: skip
    _add_progress(parser)
    parser.set_defaults(run=_run_skim)


def _run_skim(args: argparse.Namespace) -> int:
    from hepmpm.skim import SkimRequest, run_skim

    request = SkimRequest(
        inputs=args.inputs,
        out=args.out,
        feature_set=args.feature_set,
        selection=_jet_selection(args, args.max_particles or 128),
        executor=args.executor,
        workers=args.workers,
        chunksize=args.chunksize,
        scheduler=args.scheduler,
        domain=args.domain,
        require_impact_parameters=args.require_impact_parameters,
    )
    manifest, _ = run_skim(request, show_progress=not args.no_progress)
    jets = sum(s["jets"] for s in manifest["shards"])
    print(f"wrote {jets} jets in {len(manifest['shards'])} shards to {args.out}")
    for dataset, counts in manifest["counts"].items():
        skipped = {
            k.removeprefix("skipped_"): v
            for k, v in counts.items()
            if k.startswith("skipped_") and v
        }
        print(
            f"  {dataset}: {counts['events']} events, {counts['jets_seen']} jets seen, "
            f"{counts['jets_written']} written, {counts['jets_truncated']} truncated, "
            f"skipped {skipped or 'none'}"
        )
    for name, record in manifest["missing_inputs"].items():
        print(f"  note: {name} absent in {len(record['files'])} file(s), {record['replaced_by']}")
    return 0


def _add_pretrain(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pretrain",
        help="masked particle pre-training of a backbone on a skim folder (Lightning)",
        description=(
            "Pre-train a set-transformer backbone by masking particles and predicting them "
            "(tokens of a fitted tokenizer, features, particle ids). Writes checkpoints, logs "
            "and backbone.pt/backbone.json for fine-tuning."
        ),
    )
    parser.add_argument(
        "--config", required=True, help=f"YAML file, or a packaged name: {_packaged('pretrain')}"
    )
    parser.add_argument("--data", type=Path, required=True, help="skim folder (hepmpm skim)")
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder (hepmpm tokenizer)")
    parser.add_argument(
        "--init",
        metavar="pretrained:NAME|PRETRAIN_DIR",
        help="continue pre-training these weights (e.g. on your own data) with their "
        "architecture, input statistics and masked-particle recipe (the config's backbone and "
        "mpm sections yield; --set may change the recipe, not the architecture)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    _add_overrides(parser, "config", "trainer.max_steps=200")
    parser.add_argument(
        "--devices", help="devices per node, or 'auto' (trainer.devices; DDP when more than one)"
    )
    parser.add_argument(
        "--num-nodes", type=_positive_int, help="nodes (trainer.num_nodes; torchrun or SLURM)"
    )
    _add_progress(parser)
    parser.set_defaults(run=_run_pretrain)


def _run_pretrain(args: argparse.Namespace) -> int:
    from hepmpm.training.pretrain import run_pretrain

    overrides = list(args.overrides)
    if args.devices is not None:
        overrides.append(f"trainer.devices={args.devices}")
    if args.num_nodes is not None:
        overrides.append(f"trainer.num_nodes={args.num_nodes}")
    metrics = run_pretrain(
        args.config,
        args.data,
        args.out,
        tokenizer_dir=args.tokenizer,
        overrides=overrides,
        resume=args.resume,
        show_progress=not args.no_progress,
        init=args.init,
    )
    if metrics["rank"] != 0:
        return 0  # DDP: rank 0 reports
    summary = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k.startswith("val/"))
    print(f"pre-trained {metrics['steps']} steps: {summary}")
    print(f"backbone: {args.out / 'backbone.pt'} (+ backbone.json); logs: {args.out / 'logs'}")
    return 0


def _add_tokenizer(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tokenizer",
        help="fit a particle tokenizer (VQ-VAE or k-means) on a skim folder",
        description=(
            "Fit the tokenizer a config describes (kind: vqvae or kmeans) on the train split of "
            "a skim folder, report its metrics on the val split, and write it to --out "
            "(tokenizer.json + weights.pt; nothing appears there until it is complete)."
        ),
    )
    parser.add_argument(
        "--config", default="vqvae",
        help=f"packaged config ({_packaged('tokenizer')}) or a YAML path (default: vqvae)",
    )  # fmt: skip
    parser.add_argument("--data", type=Path, required=True, help="skim folder (manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    _add_overrides(parser, "config", "trainer.max_steps=1000")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted run (same config and skim) from its last checkpoint",
    )  # fmt: skip
    _add_progress(parser)
    parser.set_defaults(run=_run_tokenizer)


def _run_tokenizer(args: argparse.Namespace) -> int:
    from hepmpm.training.tokenizer import load_tokenizer_config

    config = load_tokenizer_config(args.config, args.overrides)  # config errors before Lightning
    from hepmpm.training.tokenizer import run_tokenizer, summary_lines

    run = run_tokenizer(
        config, args.data, args.out, show_progress=not args.no_progress, resume=args.resume
    )
    if run.written:
        print("\n".join(summary_lines(run)))
    return 0


def _add_export(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="export a fine-tuned tagger to ONNX (validated against torch)",
        description=(
            "Export FINETUNE_DIR (tagger.pt + tagger.json) to ONNX: the hepmpm layout "
            "(pf_features [N, P, F] raw, pf_mask [N, P] -> probs, embedding) or the cmssw layout "
            "(weaver names, [N, F, P], softmax, + preprocess.json). The file is checked with "
            "onnx.checker and onnxruntime vs torch before it is kept."
        ),
    )
    parser.add_argument("finetune_dir", type=Path, metavar="FINETUNE_DIR")
    parser.add_argument("--out", type=Path, required=True, help="output .onnx file")
    parser.add_argument("--layout", choices=["hepmpm", "cmssw"], default="hepmpm")
    parser.add_argument("--opset", type=_positive_int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument(
        "--max-particles", type=_positive_int, default=128,
        help="particle cap recorded for analyses and preprocess.json (default: 128)",
    )  # fmt: skip
    parser.add_argument(
        "--quantize", choices=["int8", "fp16"], action="append", default=[],
        help="also write MODEL.int8.onnx / MODEL.fp16.onnx and compare them (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--data", type=Path, metavar="SKIM", help="skim folder whose test split scores --quantize"
    )
    parser.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from hepmpm.export import export_tagger

    if args.data and not args.quantize:
        raise HepmpmError("--data is used by --quantize; give --quantize int8 or fp16")
    if args.data:  # checked before anything is written
        from hepmpm.data.manifest import load_manifest

        load_manifest(args.data)
    report = export_tagger(args.finetune_dir, args.out, args.layout, args.opset, args.max_particles)
    try:
        _quantize_exported(report, args)
    except BaseException:
        # A failed --quantize leaves no float model beside it: the command did not complete.
        quantized = [report.path.with_name(f"{report.path.stem}.{k}.onnx") for k in args.quantize]
        for path in (report.path, report.preprocess_json, *quantized):
            if path is not None:
                Path(path).unlink(missing_ok=True)
        raise
    return 0


def _quantize_exported(report: ExportReport, args: argparse.Namespace) -> None:
    from hepmpm.export import quantize_model

    info = report.info
    print(
        f"wrote {report.path} ({report.layout} layout, opset {report.opset}, feature set "
        f"{info.feature_set}, {len(info.class_names)} classes); onnxruntime vs torch: "
        f"max |Δprob| {report.worst:.2g} over {len(report.max_abs_diff)} (N, P) sizes"
    )
    if report.preprocess_json:
        print(f"wrote {report.preprocess_json} (identity transforms: normalisation in the graph)")
    for kind in args.quantize:
        q = quantize_model(report.path, kind, data=args.data)
        line = f"wrote {q.path}: max |Δprob| {q.max_abs_diff:.2g} vs float on {q.jets} {q.source}"
        if q.accuracy_change is not None:
            line += (
                f"; accuracy {q.accuracy_float:.4f} -> {q.accuracy_quantized:.4f} "
                f"({q.accuracy_change:+.4f})"
            )
        print(line)


def _add_tag(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tag",
        help="tag NanoAOD FatJets with an exported model (coffea); histograms + parquet scores",
        description=(
            "Run the TaggerProcessor over ROOT files, folders or fileset JSON files: the skim's "
            "jet selection and feature code, onnxruntime inference; writes OUT/hists.json (UHI "
            "JSON), OUT/scores/<dataset>/*.parquet and OUT/summary.json."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_FILESET")
    parser.add_argument("--model", type=Path, required=True, help="ONNX file (hepmpm export)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    _add_runner(parser)
    parser.add_argument("--threads", type=_positive_int, help="onnxruntime threads per worker")
    _add_jet_selection(parser, "particle cap (default: the model's)")
    parser.add_argument("--no-scores", action="store_true", help="histograms only, no parquet")
    _add_progress(parser)
    parser.set_defaults(run=_run_tag)


def _run_tag(args: argparse.Namespace) -> int:
    from hepmpm.export import read_model_info
    from hepmpm.tag import TagRequest, run_tag

    info = read_model_info(args.model)
    request = TagRequest(
        model=args.model,
        inputs=args.inputs,
        out=args.out,
        selection=_jet_selection(args, args.max_particles or info.max_particles),
        executor=args.executor,
        workers=args.workers,
        chunksize=args.chunksize,
        scheduler=args.scheduler,
        write_scores=not args.no_scores,
        threads=args.threads,
    )
    summary, hists = run_tag(request, show_progress=not args.no_progress)
    tagged = sum(c["jets_tagged"] for c in summary["counts"].values())
    print(f"tagged {tagged} jets with {args.model} ({summary['feature_set']}); wrote {args.out}")
    score = hists["score"]
    for dataset, counts in summary["counts"].items():
        means = []
        for name in summary["class_names"]:
            h = score[dataset, name, :]
            total = h.values().sum()
            mean = (h.values() * h.axes[0].centers).sum() / total if total else float("nan")
            means.append(f"{name} {mean:.3f}")
        print(
            f"  {dataset}: {counts['events']} events, {counts['jets_seen']} jets seen, "
            f"{counts['jets_tagged']} tagged; mean score: {', '.join(means)}"
        )
    for source, names in summary["missing_inputs"].items():
        print(f"  note: {source} lacks {', '.join(names)} (zeros / derived, as in the skim)")
    return 0


def _edges(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def _add_calibrate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="working points and data/simulation scale factors (correctionlib JSON)",
        description=(
            "From two `hepmpm tag` folders of the same model (simulation and labelled "
            "pseudo-data): score thresholds at the requested QCD mistag rates or signal "
            "efficiencies in simulation, signal efficiency and mistag rate per pT/|eta| bin in "
            "both, SF = eff_data / eff_sim with Clopper-Pearson uncertainties. Writes "
            "OUT/scale_factors.json (correctionlib schemav2), OUT/calibration.json, OUT/plots/."
        ),
    )
    parser.add_argument("--sim", type=Path, required=True, help="hepmpm tag folder (simulation)")
    parser.add_argument("--data", type=Path, required=True, help="hepmpm tag folder (data)")
    parser.add_argument("--signal", required=True, help="signal class, e.g. Tbqq")
    parser.add_argument("--background", default="QCD", help="background class (default QCD)")
    parser.add_argument(
        "--working-points", action="append", required=True, metavar="KIND=X[,X...]",
        help="mistag=0.01,0.05 (QCD mistag rate in simulation) and/or eff=0.5 (signal "
        "efficiency); repeatable",
    )  # fmt: skip
    parser.add_argument(
        "--pt-bins", type=_edges, default=[500.0, 600.0, 700.0, 1000.0], metavar="EDGES",
        help="jet pT bin edges / GeV (default 500,600,700,1000)",
    )  # fmt: skip
    parser.add_argument(
        "--eta-bins", type=_edges, default=[0.0, 2.4], metavar="EDGES",
        help="jet |eta| bin edges (default 0,2.4)",
    )  # fmt: skip
    parser.add_argument(
        "--control-region", metavar="SELECTION",
        help="real data without truth: a background-dominated selection of jets, e.g. "
        "'jet_pt < 600 and abseta < 1.5' (columns jet_pt / GeV, jet_eta, abseta, score_<class>); "
        "its data jets measure the mistag SF",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-plots", action="store_true", help="JSON files only")
    parser.set_defaults(run=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    from hepmpm.calibration.run import CalibrationRequest, run_calibration
    from hepmpm.calibration.working_points import parse_working_points

    request = CalibrationRequest(
        sim=args.sim,
        data=args.data,
        signal=args.signal,
        background=args.background,
        working_points=parse_working_points(args.working_points),
        out=args.out,
        pt_edges=args.pt_bins,
        eta_edges=args.eta_bins,
        control_region=args.control_region,
        plots=not args.no_plots,
    )
    summary = run_calibration(request)
    print(f"wrote {args.out / summary['corrections_file']} and {args.out / 'calibration.json'}")
    for wp in summary["working_points"]:
        panel = "signal" if "signal" in wp["corrections"] else "mistag"
        sfs = ", ".join(
            f"{b['sf']:.3f} +{b['sf_up'] - b['sf']:.3f} -{b['sf'] - b['sf_down']:.3f}"
            for b in wp["corrections"][panel]["bins"]
        )
        print(
            f"  {wp['name']}: threshold {wp['threshold']:.4g}, sim efficiency "
            f"{wp['sim_efficiency']:.3f}, sim mistag {wp['sim_mistag']:.4f}; {panel} SF per "
            f"bin: {sfs}"
        )
    for bin_ in summary["flagged_bins"]:
        print(
            f"  note: {bin_['correction']} pT {bin_['pt']} |eta| {bin_['abseta']}: "
            f"{bin_['flag']} (SF 1 +1 -1)"
        )
    return 0


def _add_finetune(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "finetune",
        help="fine-tune a pre-trained backbone into a jet tagger; metrics on the test split",
        description=(
            "Train a class-attention tagger on a skim folder's labelled jets: on a frozen "
            "pre-trained backbone, fine-tuning it, or from scratch. Writes tagger.pt/tagger.json "
            "(for hepmpm export), metrics.json (test split), checkpoints and logs."
        ),
    )
    parser.add_argument(
        "--config", required=True, help=f"YAML file, or a packaged name: {_packaged('finetune')}"
    )
    parser.add_argument("--data", type=Path, required=True, help="skim folder (hepmpm skim)")
    parser.add_argument(
        "--backbone",
        metavar="PRETRAIN_DIR|pretrained:NAME",
        help="pre-training folder (hepmpm pretrain) or a shipped backbone; not for scratch",
    )
    parser.add_argument(
        "--mode", choices=["frozen", "finetune", "scratch"],
        help="frozen backbone, fine-tuned backbone, or random init (default: the config's)",
    )  # fmt: skip
    parser.add_argument(
        "--labels", type=_positive_int, metavar="N",
        help="train on N class-balanced labelled jets (default: the whole train split)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", help="comma-separated classes, e.g. QCD,Wqq,Tbqq (default: all in the skim)"
    )
    parser.add_argument("--seed", type=int, help="seed of the init and the labelled subset")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    _add_overrides(parser, "config", "trainer.max_steps=200")
    _add_progress(parser)
    parser.set_defaults(run=_run_finetune)


def _add_pretrained(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "pretrained",
        help="list the backbones shipped with hepmpm (use as --backbone pretrained:NAME)",
        description="The pre-trained backbones inside the package and their model cards; "
        "`hepmpm pretrained ship` adds one (maintainers).",
    )
    parser.set_defaults(run=_run_pretrained)
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    ship = actions.add_parser(
        "ship",
        help="ship a pre-training as a packaged backbone (maintainers)",
        description=(
            "Copy backbone.pt, backbone.json and mpm.pt of a pre-training into "
            "hepmpm/pretrained/NAME/ and write its card.json (corpus, feature set, config, "
            "steps, online probe vs its random-init twin, hepmpm version, sha256 of every "
            "file): a label-efficiency study's pre-training (--study), or one made elsewhere "
            "(--pretrain, with its --corpus and --made-by)."
        ),
    )
    source = ship.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", type=Path, help="label-efficiency study folder")
    source.add_argument(
        "--pretrain", type=Path, help="a pre-training folder made outside a study (with --corpus)"
    )
    ship.add_argument("--pretraining", default="pretrain", help="with --study: which one")
    ship.add_argument(
        "--corpus", help="with --pretrain: preset=P,classes=A+B,jets_per_class=N,seed=S"
    )
    ship.add_argument("--made-by", help="with --pretrain: the command that made it")
    ship.add_argument("--name", required=True, help="the shipped name (pretrained:NAME)")
    ship.set_defaults(run=_run_ship, command="pretrained ship")


def _run_pretrained(args: argparse.Namespace) -> int:
    from hepmpm.pretrained import check_card, shipped

    folders = shipped()
    if not folders:
        print("no backbone ships with this hepmpm")
    for name, folder in folders.items():
        card = check_card(folder)
        data, probe = card["data"], card["probe"]
        print(
            f"pretrained:{name}: {card['backbone_size']} backbone, feature set "
            f"{card['feature_set']}, {card['steps']} steps on a corpus of {data['jets']} "
            f"{data['preset']} jets "
            f"({', '.join(data['classes'])}); linear probe {probe['accuracy']:.3f} vs "
            f"{probe['random_init_accuracy']:.3f} at random init; hepmpm {card['hepmpm_version']}"
        )
    return 0


def _run_ship(args: argparse.Namespace) -> int:
    from hepmpm.studies.ship_backbone import make_card, parse_corpus, ship, study_card

    if args.study:
        folder, card = study_card(args.study, args.pretraining)
    else:
        if not (args.corpus and args.made_by):
            raise HepmpmError("--pretrain needs --corpus and --made-by")
        corpus = parse_corpus(args.corpus)
        folder = args.pretrain
        card = make_card(
            folder, corpus, corpus["classes"],
            "a labelled sample the corpus does not contain (train split to fit, val split "
            "to score)", args.made_by,
        )  # fmt: skip
    print(ship(folder, card, args.name))
    return 0


def _run_finetune(args: argparse.Namespace) -> int:
    from hepmpm.evaluation.metrics import summary_line
    from hepmpm.jetclass import parse_classes
    from hepmpm.training.finetune import run_finetune

    metrics = run_finetune(
        args.config,
        args.data,
        args.out,
        backbone_dir=args.backbone,
        mode=args.mode,
        labels=args.labels,
        classes=parse_classes(args.classes) if args.classes else None,
        overrides=args.overrides,
        seed=args.seed,
        resume=args.resume,
        show_progress=not args.no_progress,
    )
    if "test" not in metrics:  # another DDP rank: rank 0 reports
        return 0
    print(
        f"fine-tuned ({metrics['mode']}, {metrics['train_jets']} training jets, "
        f"{metrics['steps']} steps); test split, {metrics['test']['n_jets']} jets:"
    )
    print(f"  {summary_line(metrics['test'])}")
    print(f"tagger: {args.out / 'tagger.pt'} (+ tagger.json); metrics: {args.out / 'metrics.json'}")
    return 0


def _add_quickstart(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "quickstart",
        help="the whole chain on samples it generates: skim, fine-tune (pre-trained, adapted, "
        "scratch), export, tag, report",
        description=(
            "Generate small sim and data samples (Pythia 8 + detector), skim both with coffea, "
            "fine-tune the backbone shipped with hepmpm (pre-trained without labels; the "
            "profile's backbone) on N labelled sim jets for each N of the profile, the same "
            "fine-tuning adapted to the unlabelled data jets (domain-adversarial, no data label "
            "read) and the same tagger from scratch on the same jets, export the pre-trained "
            "tagger of the largest N to ONNX, tag both samples with the TaggerProcessor and "
            "write a report (markdown + HTML) of what pre-training and the adaptation bought, "
            "with data/sim scale factors. Re-running skips completed steps; an interrupted run "
            "resumes."
        ),
    )
    parser.add_argument(
        "--out", type=Path, default=Path("hepmpm-quickstart"),
        help="output folder (default: hepmpm-quickstart)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", default="default",
        help="tiny (about a minute), default (about ten minutes on 2 cores) or a YAML file",
    )  # fmt: skip
    _add_overrides(parser, "profile", "sim.jets_per_class=1000")
    _add_progress(parser)
    parser.set_defaults(run=_run_quickstart)


def _run_quickstart(args: argparse.Namespace) -> int:
    from hepmpm.pipeline import Pipeline
    from hepmpm.quickstart import load_profile, run_quickstart

    config = load_profile(args.profile, args.overrides)
    page = run_quickstart(config, args.out, Pipeline(progress=not args.no_progress))
    print(f"report: {page} (and {page.with_suffix('.md')})")
    return 0


def _add_study(commands: argparse._SubParsersAction) -> None:
    from hepmpm.studies.runner import STUDIES

    parser = commands.add_parser(
        "study",
        help="run a study (label-efficiency, cwola, ...), or a tool over study folders",
        description=(
            "Run one of the studies of what pre-training buys, every point with several seeds: "
            "results (CSV/JSON), mean ± std plots (PNG) and a summary (markdown + HTML) in --out. "
            "Samples, skims, pre-training and finished runs are kept, so a re-run completes an "
            "interrupted study, and one with further seeds, labels, arms or variants extends it. "
            "combine, probe-scan and rejection-table read finished label-efficiency studies."
        ),
    )
    names = parser.add_subparsers(
        title="studies and tools", dest="name", metavar="NAME", required=True
    )
    for name in STUDIES:
        study = names.add_parser(name, help=f"the {name} study", description=parser.description)
        _add_study_options(study)
    _add_combine(names)
    _add_probe_scan(names)
    _add_rejection_table(names)


def _add_study_options(parser: argparse.ArgumentParser) -> None:
    """What ``hepmpm study NAME`` takes, for every study NAME."""
    parser.add_argument(
        "--config",
        help="study YAML, or a packaged name such as label_efficiency_new_classes "
        "(default: the packaged configs/studies/NAME.yaml, '-' as '_')",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--tiny", action="store_true",
        help="the config's tiny section: small samples, few steps, seconds to a minute",
    )  # fmt: skip
    parser.add_argument(
        "--report-only", action="store_true",
        help="train nothing: tables and plots of the runs complete so far (label-efficiency)",
    )  # fmt: skip
    dask = parser.add_mutually_exclusive_group()
    dask.add_argument(
        "--workers", type=_positive_int, metavar="N",
        help="fine-tune on a local Dask cluster of N single-threaded workers (the same results)",
    )  # fmt: skip
    dask.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT",
        help="fine-tune on a running Dask cluster (the same results)",
    )  # fmt: skip
    _add_overrides(parser, "config", "seeds=[0,1,2,3]")
    _add_progress(parser)
    parser.set_defaults(run=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    from hepmpm.studies.runner import run_study

    summary = run_study(
        args.name, args.out, args.config, args.overrides, args.tiny, not args.no_progress,
        report_only=args.report_only, workers=args.workers, scheduler=args.scheduler,
    )  # fmt: skip
    print(f"summary: {summary} (and {summary.with_suffix('.html')})")
    return 0


def _study_arms(text: str) -> tuple[Path, list[str]]:
    """``STUDY:ARM,ARM`` (``hepmpm study combine --with``) as a folder and its arms."""
    folder, sep, arms = text.rpartition(":")
    if not sep or not folder or not arms:
        raise argparse.ArgumentTypeError(f"expected STUDY:ARM,ARM, got {text!r}")
    return Path(folder), arms.split(",")


def _counts(text: str) -> list[int]:
    """Comma-separated positive integers (``100,300,1000``)."""
    return [_positive_int(n) for n in text.split(",")]


def _add_combine(names: argparse._SubParsersAction) -> None:
    parser = names.add_parser(
        "combine",
        help="label-efficiency tables over the arms of several studies on the same jets",
        description=(
            "Read results.json and study.json of the main --study and of each --with STUDY:ARM,"
            "ARM (only those arms), refuse studies whose labelled sample or fine-tuning stage "
            "differ or where a run both made differs, and write the aggregated, "
            "label_efficiency (with --envelope, also against the best from-scratch arm at each "
            "N) and paired tables (.csv/.json) into --out."
        ),
    )
    parser.add_argument("--study", type=Path, required=True, help="the main study folder")
    parser.add_argument(
        "--with", dest="others", type=_study_arms, action="append", default=[],
        help="STUDY:ARM,ARM: arms of another study with the same labelled jets",
    )  # fmt: skip
    parser.add_argument("--reference", default="scratch", help="the arm the others compare with")
    parser.add_argument("--envelope", default="", help="further from-scratch arms, comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(run=_run_combine, command="study combine")


def _run_combine(args: argparse.Namespace) -> int:
    from hepmpm.studies.combine import combine

    envelope = [a for a in args.envelope.split(",") if a]
    print(*combine(args.study, args.others, args.reference, envelope, args.out))
    return 0


def _add_probe_scan(names: argparse._SubParsersAction) -> None:
    parser = names.add_parser(
        "probe-scan",
        help="a label-efficiency study's backbones probed against the number of labels",
        description=(
            "For every backbone in STUDY/work/pretrain/ and a random-init twin, a logistic "
            "regression on the frozen jet embedding fitted on N class-balanced train jets of the "
            "study's labelled sample and scored on --score-jets of its val jets, for each N and "
            "--draws draws. Writes probe_vs_labels.csv/.json and prints the mean ± std table."
        ),
    )
    parser.add_argument("--study", type=Path, required=True, help="label-efficiency study folder")
    parser.add_argument(
        "--labels", type=_counts, default=[100, 300, 1000, 3000], metavar="N,N,...",
        help="probe label counts (default: 100,300,1000,3000)",
    )  # fmt: skip
    parser.add_argument("--draws", type=int, default=3, help="draws of the jets per count")
    parser.add_argument("--score-jets", type=int, default=2000, help="val jets scored")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: --study)")
    parser.set_defaults(run=_run_probe_scan, command="study probe-scan")


def _run_probe_scan(args: argparse.Namespace) -> int:
    from hepmpm.studies.common import write_table
    from hepmpm.studies.probe_scan import probe_scan, summary

    rows = probe_scan(args.study, args.labels, args.draws, args.score_jets)
    write_table((args.out or args.study) / "probe_vs_labels.csv", rows)
    print("\n".join(summary(rows)))
    return 0


def _add_rejection_table(names: argparse._SubParsersAction) -> None:
    parser = names.add_parser(
        "rejection-table",
        help="per-class QCD rejection of every run of a label-efficiency study",
        description=(
            "Each completed run's QCD rejection 1/eps_B at 50 % signal efficiency per signal "
            "class on --sample (mean ± std over seeds per arm and labels) and the QCD jets "
            "passing the cut (its test-set error is about 1/sqrt(passing) of it). Writes "
            "rejection_SAMPLE.csv/.json and prints the markdown table."
        ),
    )
    parser.add_argument("--study", type=Path, required=True, help="label-efficiency study folder")
    parser.add_argument(
        "--sample", default="test", help="'test' (the test split) or a test_samples name"
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: --study)")
    parser.set_defaults(run=_run_rejection_table, command="study rejection-table")


def _run_rejection_table(args: argparse.Namespace) -> int:
    from hepmpm.studies.common import write_table
    from hepmpm.studies.rejection_table import rejection_rows, summary

    rows = rejection_rows(args.study, args.sample)
    write_table((args.out or args.study) / f"rejection_{args.sample}.csv", rows)
    print("\n".join(summary(rows)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hepmpm",
        description="Masked particle modeling for collider jets: generate, skim, pre-train, "
        "fine-tune and deploy jet taggers.",
    )
    parser.add_argument("--version", action="version", version=f"hepmpm {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    _add_generate(commands)
    _add_skim(commands)
    _add_tokenizer(commands)
    _add_pretrain(commands)
    _add_finetune(commands)
    _add_pretrained(commands)
    _add_export(commands)
    _add_tag(commands)
    _add_calibrate(commands)
    _add_quickstart(commands)
    _add_study(commands)
    return parser


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system error: the path(s) and the cause."""
    cause = one_line_reason(err)
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(map(str, paths))}: {cause}" if paths else cause


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hepmpm`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    quiet_lightning()
    try:
        return args.run(args)
    except HepmpmError as err:
        print(f"hepmpm {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # What the machine refused (a full disk, a read-only folder, a path that is a file):
        # not the user's input and not a bug, so one line naming the path and the cause.
        print(f"hepmpm {args.command}: error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Training commands continue only when asked (--resume); the others keep complete work.
        how = "re-run with --resume" if hasattr(args, "resume") else "re-run"
        print(f"hepmpm {args.command}: interrupted; {how} to continue", file=sys.stderr)
        return 130
