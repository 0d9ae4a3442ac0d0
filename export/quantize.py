"""Smaller variants of an exported tagger: int8 (dynamic quantization) and fp16 weights.

- ``int8``: ``onnxruntime.quantization.quantize_dynamic`` (8-bit weights of MatMul/Gemm,
  activations quantized on the fly); the CPU speed-up variant. Its weights are unsigned (U8U8
  kernels): onnxruntime's U8S8 kernels on x86 CPUs with AVX2 or AVX-512 but no VNNI use
  ``VPMADDUBSW``, whose int16 sums saturate. On such a CPU (an AMD EPYC with AVX2), for the
  tests' random-weight tagger on 256 random jets, signed weights moved the probabilities by up
  to 0.84 and changed the top class of 25 % of the jets, unsigned ones by 0.10 and 3 %. An
  exported model runs on whatever CPUs a grid site has.
- ``fp16``: ``convert_float_to_float16(..., keep_io_types=True)``: float32 inputs and outputs,
  float16 inside; the GPU variant. It uses onnxruntime's bundled copy of onnxconverter-common's
  converter (``onnxruntime.transformers.float16``): no extra dependency, and unlike
  onnxconverter-common 1.16 it keeps the attention-scale ``Cast`` nodes of these graphs
  consistent (onnxconverter-common's output fails to load: "Type (tensor(float16)) of output
  arg ... Cast_2 does not match expected type (tensor(float))").

Each writes ``<model>.<kind>.onnx`` beside the float model (atomically, carrying its metadata)
and reports its max |Δprob| against the float model and, when a skim folder is given, the
accuracy of both on its test split (random realistic jets otherwise, without an accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from hepmpm.export.metadata import ModelInfo, check_features, read_model_info, write_metadata
from hepmpm.export.random_jets import random_jets
from hepmpm.export.runtime import make_session, run_probs

from hepmpm.atomic import atomic_path
from hepmpm.errors import HepmpmError
from hepmpm.features import get_feature_set

QUANTIZATIONS = ("int8", "fp16")


@dataclass(frozen=True)
class QuantizeReport:
    """A quantized variant and how it compares with the float model on ``jets`` jets."""

    path: Path
    kind: str
    jets: int
    source: str  # "test split of SKIM" or "random jets"
    max_abs_diff: float
    accuracy_float: float | None
    accuracy_quantized: float | None

    @property
    def accuracy_change(self) -> float | None:
        if self.accuracy_float is None or self.accuracy_quantized is None:
            return None
        return self.accuracy_quantized - self.accuracy_float


def _convert(source: Path, target: Path, kind: str) -> None:
    if kind == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8)
        return
    from onnxruntime.transformers import float16

    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def _test_jets(
    info: ModelInfo, data: Path | None, limit: int, batch_size: int
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]], str]:
    """Batches (features [B, P, F], mask [B, P], labels [B] or None) to compare on."""
    if data is None:
        feature_set = get_feature_set(info.feature_set)
        batches = []
        for seed, start in enumerate(range(0, limit, batch_size)):
            n = min(batch_size, limit - start)
            features, mask = random_jets(feature_set, n, 50, seed=1000 + seed)
            batches.append((features, mask, None))
        return batches, "random jets"
    from hepmpm.data.loader import JetDataset
    from hepmpm.data.manifest import load_manifest

    manifest = load_manifest(data)
    check_features(info, "the model", manifest.feature_set)
    dataset = JetDataset(manifest, split="test", batch_size=batch_size, pad_to=info.max_particles)
    batches, seen = [], 0
    for batch in dataset:
        batches.append((batch.features.numpy(), batch.mask.numpy(), batch.labels.numpy()))
        seen += len(batch.labels)
        if seen >= limit:
            break
    if not batches:
        raise HepmpmError(f"skim {data} has no jets in its test split")
    return batches, f"test split of {data}"


def _accuracy(probs: np.ndarray, labels: np.ndarray, info: ModelInfo) -> float | None:
    """Fraction of jets (of the model's classes) whose top output is their JetClass label."""
    known = np.isin(labels, info.labels)
    if not known.any():
        return None
    predicted = np.asarray(info.labels)[probs.argmax(axis=1)]
    return float((predicted[known] == labels[known]).mean())


def quantize_model(
    model_path: Path,
    kind: str,
    data: Path | None = None,
    limit: int = 2048,
    batch_size: int = 256,
) -> QuantizeReport:
    """Write the ``kind`` variant of the exported model ``model_path``; compare it on jets."""
    if kind not in QUANTIZATIONS:
        raise HepmpmError(f"unknown quantization {kind!r}; use one of {', '.join(QUANTIZATIONS)}")
    model_path = Path(model_path)
    info = read_model_info(model_path)
    target = model_path.with_name(f"{model_path.stem}.{kind}.onnx")
    with atomic_path(target) as tmp:
        _convert(model_path, tmp, kind)
        model = onnx.load(str(tmp))
        write_metadata(model, info)
        onnx.save(model, str(tmp))
        reference = make_session(model_path, providers=["CPUExecutionProvider"])
        variant = make_session(tmp, providers=["CPUExecutionProvider"])
        batches, source = _test_jets(info, data, limit, batch_size)
        float_probs, quant_probs, labels = [], [], []
        for features, mask, batch_labels in batches:
            float_probs.append(run_probs(reference, features, mask, info.layout))
            quant_probs.append(run_probs(variant, features, mask, info.layout))
            if batch_labels is not None:
                labels.append(batch_labels)
        p_float, p_quant = np.concatenate(float_probs), np.concatenate(quant_probs)
        if not np.isfinite(p_quant).all():
            raise HepmpmError(f"the {kind} model gives non-finite probabilities; nothing written")
    all_labels = np.concatenate(labels) if labels else None
    return QuantizeReport(
        path=target,
        kind=kind,
        jets=len(p_float),
        source=source,
        max_abs_diff=float(np.abs(p_quant - p_float).max()),
        accuracy_float=None if all_labels is None else _accuracy(p_float, all_labels, info),
        accuracy_quantized=None if all_labels is None else _accuracy(p_quant, all_labels, info),
    )
