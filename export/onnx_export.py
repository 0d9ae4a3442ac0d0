"""torch → ONNX export of a fine-tuned tagger folder, checked before it is kept.

:func:`export_tagger` reads ``tagger.pt`` + ``tagger.json`` (:func:`hepmpm.models.store.
load_tagger`), wraps the :class:`~hepmpm.models.classifier.JetTagger` in the chosen layout
(:mod:`hepmpm.export.runtime` describes both), exports it with the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``: it handles ``scaled_dot_product_attention`` with a
boolean mask and dynamic N and P; ``aten::asinh``, used by ``mpm7id``'s normalisation, gets the
ONNX ``Asinh`` op it lacks), writes the hepmpm ``metadata_props``
(:mod:`hepmpm.export.metadata`), and validates the file: ``onnx.checker``, then onnxruntime
against torch on random realistic jets of N in (1, 7, 256) and P in (1, 13, 128). Everything
is written under a temporary name and renamed only when the check passes; a failed export
leaves no ``.onnx`` behind.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from hepmpm.export.cmssw import preprocess_record
from hepmpm.export.metadata import LAYOUTS, ModelInfo, model_info, write_metadata
from hepmpm.export.random_jets import random_jets
from hepmpm.export.runtime import INPUT_NAMES, OUTPUT_NAMES, make_session, run_probs
from torch import nn

from hepmpm.atomic import atomic_path, write_json_atomic
from hepmpm.errors import HepmpmError
from hepmpm.features import get_feature_set
from hepmpm.models.classifier import JetTagger
from hepmpm.models.store import TAGGER_RECORD, load_tagger

DEFAULT_OPSET = 17
MIN_OPSET = 17
#: An export fails when onnxruntime and torch differ by more than this in any probability.
TOLERANCE = 1e-4
VALIDATION_SIZES = tuple(itertools.product((1, 7, 256), (1, 13, 128)))


class HepmpmLayout(nn.Module):
    """features [N, P, F] raw, mask [N, P] float (1 = particle) → probs [N, C], embedding [N, D]."""

    def __init__(self, tagger: JetTagger) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, embedding = self.tagger(features, mask > 0.5)
        return torch.softmax(logits, dim=-1), embedding


class CmsswLayout(nn.Module):
    """features [N, F, P] raw, mask [N, 1, P] float → softmax [N, C] (weaver's ParT layout)."""

    def __init__(self, tagger: JetTagger) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits, _ = self.tagger(features.transpose(1, 2), mask[:, 0] > 0.5)
        return torch.softmax(logits, dim=-1)


@dataclass
class ExportReport:
    """What :func:`export_tagger` wrote and how close onnxruntime came to torch."""

    path: Path
    layout: str
    opset: int
    info: ModelInfo
    #: max |Δprob| (onnxruntime − torch) per validated (N, P).
    max_abs_diff: dict[tuple[int, int], float] = field(default_factory=dict)
    preprocess_json: Path | None = None

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values())


def _wrap(tagger: JetTagger, layout: str) -> nn.Module:
    return (HepmpmLayout if layout == "hepmpm" else CmsswLayout)(tagger).eval()


def _torch_probs(module: nn.Module, features: np.ndarray, mask: np.ndarray, layout: str):
    x, m = torch.from_numpy(features), torch.from_numpy(mask)
    if layout == "cmssw":
        x, m = x.transpose(1, 2).contiguous(), m[:, None, :]
    with torch.no_grad():
        out = module(x, m)
    return (out[0] if isinstance(out, tuple) else out).numpy()


def _asinh_symbolic(g, x):  # noqa: ANN001 - TorchScript symbolic signature
    return g.op("Asinh", x)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """Silence the TorchScript exporter's deprecation and tracer warnings (expected)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _export_graph(module: nn.Module, path: Path, layout: str, opset: int, n_features: int):
    """Trace ``module`` to ``path`` with dynamic N and P."""
    torch.onnx.register_custom_op_symbolic("aten::asinh", _asinh_symbolic, 9)
    features, mask = (torch.ones(2, 3, n_features), torch.ones(2, 3))
    particle_axis = 2 if layout == "cmssw" else 1
    if layout == "cmssw":
        features, mask = features.transpose(1, 2).contiguous(), mask[:, None, :]
    outputs = OUTPUT_NAMES[layout]
    dynamic = {
        "pf_features": {0: "N", particle_axis: "P"},
        "pf_mask": {0: "N", particle_axis: "P"},
        **{name: {0: "N"} for name in outputs},
    }
    with _quiet_export():
        torch.onnx.export(
            module,
            (features, mask),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    module.eval()  # the exporter restores the wrapper's mode; keep it in evaluation


def validate_export(
    path: Path, module: nn.Module, info: ModelInfo, tolerance: float = TOLERANCE
) -> dict[tuple[int, int], float]:
    """``onnx.checker`` on ``path``, then onnxruntime vs ``module`` on random jets of every
    (N, P) in :data:`VALIDATION_SIZES`; a :class:`HepmpmError` if any |Δprob| > ``tolerance``."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as err:
        raise HepmpmError(f"exported model fails onnx.checker: {err}") from None
    session = make_session(path, providers=["CPUExecutionProvider"])
    feature_set = get_feature_set(info.feature_set)
    diffs = {}
    for seed, (n, p) in enumerate(VALIDATION_SIZES):
        features, mask = random_jets(feature_set, n, p, seed=seed)
        expected = _torch_probs(module, features, mask, info.layout)
        got = run_probs(session, features, mask, info.layout)
        diffs[(n, p)] = float(np.abs(got - expected).max())
    worst = max(diffs, key=diffs.get)
    if not diffs[worst] <= tolerance:  # NaN fails too
        raise HepmpmError(
            f"onnxruntime disagrees with torch: max |Δprob| {diffs[worst]:.3g} > {tolerance:g} "
            f"at N={worst[0]}, P={worst[1]}; nothing written"
        )
    return diffs


def export_tagger(
    finetune_dir: Path,
    out: Path,
    layout: str = "hepmpm",
    opset: int = DEFAULT_OPSET,
    max_particles: int = 128,
    preprocess_json: Path | None = None,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Export the tagger of ``finetune_dir`` to ``out`` in ``layout``, validated.

    ``cmssw`` also writes ``preprocess.json`` (default: beside ``out``, as weaver-core does;
    see :mod:`hepmpm.export.cmssw`). ``max_particles`` is recorded for the analysis side
    (:class:`~hepmpm.export.OnnxTagger` pads to at most that many) and in ``preprocess.json``.
    ``tolerance``: the largest max |Δprob| (onnxruntime vs torch) accepted.
    """
    if layout not in LAYOUTS:
        raise HepmpmError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if opset < MIN_OPSET:
        raise HepmpmError(f"--opset {opset} is too old; use {MIN_OPSET} or newer")
    finetune_dir, out = Path(finetune_dir), Path(out)
    if out.suffix != ".onnx":
        raise HepmpmError(f"--out {out} must end in .onnx")
    tagger, record = load_tagger(finetune_dir)
    info = model_info(record, finetune_dir / TAGGER_RECORD, layout, max_particles)
    module = _wrap(tagger, layout)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = ExportReport(path=out, layout=layout, opset=opset, info=info)
    with atomic_path(out) as tmp:
        try:
            _export_graph(module, tmp, layout, opset, tagger.feature_set.n_features)
        except Exception as err:  # exporter failures: unsupported op, opset too new, ...
            raise HepmpmError(f"torch.onnx.export failed for {finetune_dir}: {err}") from None
        model = onnx.load(str(tmp))
        write_metadata(model, info)
        onnx.save(model, str(tmp))
        report.max_abs_diff = validate_export(tmp, module, info, tolerance)
        if layout == "cmssw":
            report.preprocess_json = Path(preprocess_json or out.parent / "preprocess.json")
            write_json_atomic(report.preprocess_json, preprocess_record(info))
    return report
