"""onnxruntime sessions for hepmpm taggers, and feeding them jets in either layout.

``hepmpm`` layout: ``pf_features`` float32 [N, P, F] raw features, ``pf_mask`` float32 [N, P]
(1 = particle, 0 = padding) → ``probs`` [N, C], ``embedding`` [N, D].
``cmssw`` layout (weaver names and shapes): ``pf_features`` float32 [N, F, P], ``pf_mask``
float32 [N, 1, P] → ``softmax`` [N, C].
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hepmpm.errors import HepmpmError

#: Input and output names of each layout.
INPUT_NAMES = ("pf_features", "pf_mask")
OUTPUT_NAMES = {"hepmpm": ("probs", "embedding"), "cmssw": ("softmax",)}


def default_providers() -> list[str]:
    """CUDA when this onnxruntime build and machine have it, then the CPU."""
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def make_session(
    path: Path, threads: int | None = None, providers: Sequence[str] | None = None
) -> ort.InferenceSession:
    """An inference session on ``path``; ``threads`` limits intra-op threads (``None``: ORT's
    default, all cores). A damaged file is a :class:`HepmpmError` naming it."""
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no per-node provider placement chatter
    # No busy-waiting of the intra-op threads between runs: in an analysis the Python work
    # between batches (reading, features) needs those cores (measured: +25-50% tagging jets/s
    # on 2 shared cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(path), options, providers=list(providers or default_providers())
        )
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise HepmpmError(
            f"{path}: onnxruntime cannot load it ({type(err).__name__}: {err})"
        ) from None


def layout_inputs(features: np.ndarray, mask: np.ndarray, layout: str) -> dict[str, np.ndarray]:
    """The session feed of jets given as features [N, P, F] and mask [N, P] (any numeric/bool)."""
    features = np.ascontiguousarray(features, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)
    if layout == "cmssw":
        return {
            "pf_features": np.ascontiguousarray(features.transpose(0, 2, 1)),
            "pf_mask": np.ascontiguousarray(mask[:, None, :]),
        }
    return {"pf_features": features, "pf_mask": np.ascontiguousarray(mask)}


def run_probs(
    session: ort.InferenceSession, features: np.ndarray, mask: np.ndarray, layout: str
) -> np.ndarray:
    """Class probabilities [N, C] float32 of jets given as features [N, P, F], mask [N, P]."""
    output = OUTPUT_NAMES[layout][0]
    return session.run([output], layout_inputs(features, mask, layout))[0]
