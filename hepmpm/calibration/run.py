"""``hepmpm calibrate``: working points and data/simulation scale factors of a tagger.

From two ``hepmpm tag`` folders of the same model, ``sim`` and ``data``, it writes into ``OUT``:

- ``scale_factors.json``: correctionlib (schemav2), per working point ``WP`` two corrections,
  ``<signal>vs<background>_<WP>`` (signal-jet efficiency SF) and ``..._<WP>_mistag`` (SF of the
  background mistag rate), inputs ``pt``, ``abseta``, ``systematic`` (nominal/up/down);
- ``plots/efficiency_<WP>.png``, ``plots/sf_<WP>.png``;
- ``calibration.json`` (last): the model, the working points (threshold, sim rates), every bin
  (counts, efficiencies with intervals, SF nominal/up/down, flag) and the flagged bins.

Which data jets count: on pseudo-data with truth labels, the signal and background jets by
truth. On real data (no truth), ``control_region`` names a background-dominated selection
(e.g. ``"jet_pt < 600 and score_Hbb < 0.1"``): its data jets are taken as background and the
simulated background jets of the same selection are their reference, so the mistag SF is
measured without truth and no signal-efficiency SF is written (it needs a signal-enriched
region and a template fit, outside this command). The selection's background purity in
simulation is recorded; it depends on the simulated class mix, which is not a cross-section
weighted one. A selection on the tagger's own scores biases the mistag rate it measures.

Every file is written atomically; a folder that already holds a calibration is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hepmpm.atomic import write_json_atomic
from hepmpm.calibration.correction_json import build_correction, write_correction_set
from hepmpm.calibration.efficiency import BinnedEfficiency, bin_index, binned_efficiency
from hepmpm.calibration.inputs import (
    TaggedJets,
    check_same_model,
    model_identity,
    read_tagged,
    truth_label,
)
from hepmpm.calibration.plots import efficiency_plot, scale_factor_plot
from hepmpm.calibration.scale_factors import ScaleFactors, scale_factors
from hepmpm.calibration.working_points import WorkingPoint, WorkingPointSpec, find_threshold
from hepmpm.errors import HepmpmError
from hepmpm.folder_lock import holding_folder

SUMMARY_NAME, CORRECTIONS_NAME = "calibration.json", "scale_factors.json"
DEFAULT_PT_EDGES: tuple[float, ...] = (500.0, 600.0, 700.0, 1000.0)
DEFAULT_ETA_EDGES: tuple[float, ...] = (0.0, 2.4)


@dataclass(frozen=True)
class CalibrationRequest:
    """Which tagging folders, classes, working points and bins (pT / GeV, |η|)."""

    sim: Path
    data: Path
    signal: str
    background: str
    working_points: Sequence[WorkingPointSpec]
    out: Path
    pt_edges: Sequence[float] = DEFAULT_PT_EDGES
    eta_edges: Sequence[float] = DEFAULT_ETA_EDGES
    #: A background-dominated selection of data jets (see the module docstring), or None.
    control_region: str | None = None
    #: Efficiency and SF plots beside the JSON (off: the numbers only, faster).
    plots: bool = True


def correction_name(signal: str, background: str, wp: str, panel: str) -> str:
    """``Tbqq_vs_QCD_mistag0p01`` (signal jets) or ``..._mistag`` appended (background jets)."""
    return f"{signal}vs{background}_{wp}" + ("_mistag" if panel == "mistag" else "")


def check_edges(edges: Sequence[float], flag: str, lowest: float = -np.inf) -> np.ndarray:
    """Bin edges as an array: at least two, strictly increasing, all ``>= lowest``."""
    array = np.asarray(edges, dtype=np.float64)
    if array.ndim != 1 or len(array) < 2 or not np.all(np.diff(array) > 0):
        raise HepmpmError(f"{flag}: expected at least two increasing edges, got {list(edges)}")
    if not np.isfinite(array).all() or array[0] < lowest:
        raise HepmpmError(f"{flag}: edges must be finite and >= {lowest:g}, got {list(edges)}")
    return array


def _bins(
    e_sim: BinnedEfficiency, e_data: BinnedEfficiency, sf: ScaleFactors
) -> list[dict[str, Any]]:
    def number(x: float) -> float | None:
        return None if not np.isfinite(x) else float(x)

    rows = []
    for i in range(len(sf.pt_edges) - 1):
        for j in range(len(sf.eta_edges) - 1):
            rows.append({
                "pt": [float(sf.pt_edges[i]), float(sf.pt_edges[i + 1])],
                "abseta": [float(sf.eta_edges[j]), float(sf.eta_edges[j + 1])],
                **{
                    f"{name}_{key}": value
                    for name, e in (("sim", e_sim), ("data", e_data))
                    for key, value in (
                        ("passed", int(e.passed[i, j])),
                        ("total", int(e.total[i, j])),
                        ("efficiency", number(e.efficiency[i, j])),
                        ("interval", [number(e.low[i, j]), number(e.high[i, j])]),
                    )
                },
                "sf": float(sf.nominal[i, j]),
                "sf_up": float(sf.up[i, j]),
                "sf_down": float(sf.down[i, j]),
                "flag": str(sf.flag[i, j]),
            })  # fmt: skip
    return rows


def _truth(jets: TaggedJets, name: str, role: str, sample: str) -> np.ndarray:
    chosen = jets.is_class(name, role)
    if not chosen.any():
        raise HepmpmError(
            f"{jets.folder}: no {name} jets (truth label {truth_label(name, role)}, {role}) in "
            f"the {sample} tagging output; the calibration needs truth-labelled jets of both "
            "classes"
        )
    return chosen


def read_scale_factors(calibration: Path, name: str) -> ScaleFactors:
    """The scale factors of correction ``name`` as ``hepmpm calibrate`` measured them, read from
    the ``calibration.json`` of the folder ``calibration`` (not from the correctionlib file)."""
    path = Path(calibration) / SUMMARY_NAME
    if not path.is_file():
        raise HepmpmError(f"{calibration}: no {SUMMARY_NAME}; expected a `hepmpm calibrate` folder")
    summary = json.loads(path.read_text())
    found = {
        c["name"]: c["bins"] for wp in summary["working_points"] for c in wp["corrections"].values()
    }
    if name not in found:
        raise HepmpmError(f"{path}: no correction {name!r}; it has {', '.join(found)}")
    pt_edges, eta_edges = np.asarray(summary["pt_edges"]), np.asarray(summary["eta_edges"])
    shape = (len(pt_edges) - 1, len(eta_edges) - 1)
    bins = found[name]  # pT-major, |eta| fastest
    column = lambda key: np.array([b[key] for b in bins]).reshape(shape)  # noqa: E731
    return ScaleFactors(
        column("sf"), column("sf_up"), column("sf_down"), column("flag"), pt_edges, eta_edges
    )


def run_calibration(request: CalibrationRequest) -> dict[str, Any]:
    """Measure the working points and scale factors of ``request``; returns the summary written
    to ``OUT/calibration.json``. ``OUT`` is held for the run (one calibration at a time)."""
    with holding_folder(Path(request.out), "calibration"):
        return _calibrate(request)


def _calibrate(request: CalibrationRequest) -> dict[str, Any]:
    out = Path(request.out)
    if (out / SUMMARY_NAME).exists():
        raise HepmpmError(f"{out} already holds a calibration; choose another --out")
    pt_edges = check_edges(request.pt_edges, "--pt-bins", lowest=0.0)
    eta_edges = check_edges(request.eta_edges, "--eta-bins", lowest=0.0)
    if request.signal == request.background:
        raise HepmpmError(f"--signal and --background are both {request.signal}")
    sim, data = read_tagged(request.sim), read_tagged(request.data)
    check_same_model(sim, data)
    # Both must be outputs of the model (the discriminant) and JetClass classes (the truth).
    for name, role in ((request.signal, "--signal"), (request.background, "--background")):
        sim.class_index(name, role)
        truth_label(name, role)
    has_truth = bool((data.label >= 0).any())
    if not has_truth and request.control_region is None:
        raise HepmpmError(
            f"{data.folder}: the data jets have no truth labels; name a background-dominated "
            "control region with --control-region (e.g. 'jet_pt < 600') to measure the mistag "
            "scale factor on them"
        )
    samples = {"sim": sim, "data": data}
    d_value = {k: j.discriminant(request.signal, request.background) for k, j in samples.items()}
    truth = {
        (k, panel): _truth(j, name, role, k)
        for k, j in samples.items()
        for panel, role, name in (
            ("signal", "--signal", request.signal),
            ("mistag", "--background", request.background),
        )
        if k == "sim" or has_truth
    }
    # The simulated background by truth, before a control region narrows the mistag panel.
    sim_background = truth["sim", "mistag"]
    region = {}
    if request.control_region is not None:
        region = {
            k: j.select(request.control_region, "--control-region") for k, j in samples.items()
        }
        truth["data", "mistag"] = region["data"]
        truth["sim", "mistag"] = truth["sim", "mistag"] & region["sim"]
        for k in samples:
            if not truth[k, "mistag"].any():
                raise HepmpmError(
                    f"--control-region {request.control_region!r} selects no "
                    f"{'background ' if k == 'sim' else ''}jets of {samples[k].folder}"
                )
    panels = ("signal", "mistag") if has_truth else ("mistag",)
    outside = {
        k: int((~bin_index(j.pt, j.abseta, pt_edges, eta_edges)[2]).sum())
        for k, j in samples.items()
    }

    corrections, working_points, flagged = [], [], []
    for spec in request.working_points:
        # The thresholds: all simulated signal and background jets, whatever the control region.
        wp: WorkingPoint = find_threshold(
            spec,
            d_value["sim"][truth["sim", "signal"]],
            d_value["sim"][sim_background],
        )
        efficiencies: dict[str, dict[str, BinnedEfficiency]] = {panel: {} for panel in panels}
        factors: dict[str, ScaleFactors] = {}
        record: dict[str, Any] = {**wp.as_dict(), "corrections": {}}
        for panel in panels:
            for k, j in samples.items():
                chosen = truth[k, panel]
                passed = d_value[k][chosen] >= wp.threshold
                efficiencies[panel][k] = binned_efficiency(
                    passed, j.pt[chosen], j.abseta[chosen], pt_edges, eta_edges
                )
            factors[panel] = sf = scale_factors(
                efficiencies[panel]["data"], efficiencies[panel]["sim"], pt_edges, eta_edges
            )
            name = correction_name(request.signal, request.background, wp.name, panel)
            what = "signal efficiency" if panel == "signal" else f"{request.background} mistag"
            corrections.append(
                build_correction(
                    name,
                    f"data/simulation SF of the {what} of {request.signal} vs "
                    f"{request.background} >= {wp.threshold:.6g} ({wp.kind} {wp.target:g} in "
                    f"simulation); model {model_identity(sim.summary)[:16]}",
                    sf,
                )
            )
            bins = _bins(efficiencies[panel]["sim"], efficiencies[panel]["data"], sf)
            record["corrections"][panel] = {"name": name, "bins": bins}
            flagged += [
                {"correction": name, "pt": b["pt"], "abseta": b["abseta"], "flag": b["flag"]}
                for b in bins
                if b["flag"] != "ok"
            ]
        if request.plots:
            title = f"{request.signal} vs {request.background}, {wp.name} (d ≥ {wp.threshold:.4g})"
            record["plots"] = [
                str(p.relative_to(out))
                for p in (
                    efficiency_plot(
                        efficiencies, pt_edges, eta_edges, title,
                        out / "plots" / f"efficiency_{wp.name}.png",
                    ),
                    scale_factor_plot(factors, title, out / "plots" / f"sf_{wp.name}.png"),
                )
            ]  # fmt: skip
        working_points.append(record)

    out.mkdir(parents=True, exist_ok=True)
    write_correction_set(
        out / CORRECTIONS_NAME,
        corrections,
        f"hepmpm calibrate: {request.signal} vs {request.background} scale factors",
    )
    summary = {
        "format": "hepmpm-calibration",
        "model": sim.summary.get("model"),
        "model_sha256": sim.summary.get("model_sha256"),
        "config_hash": sim.summary.get("config_hash"),
        "sim": str(Path(request.sim).resolve()),
        "data": str(Path(request.data).resolve()),
        "signal": request.signal,
        "background": request.background,
        "discriminant": f"p_{request.signal} / (p_{request.signal} + p_{request.background})",
        "pass": "discriminant >= threshold",
        "data_truth": has_truth,
        "control_region": request.control_region,
        "control_region_purity_sim": float(sim_background[region["sim"]].mean())
        if region and region["sim"].any()
        else None,
        "pt_edges": pt_edges.tolist(),
        "eta_edges": eta_edges.tolist(),
        "jets": {k: len(j.label) for k, j in samples.items()},
        "jets_outside_bins": outside,
        "corrections_file": CORRECTIONS_NAME,
        "working_points": working_points,
        "flagged_bins": flagged,
    }
    write_json_atomic(out / SUMMARY_NAME, summary)
    return summary
