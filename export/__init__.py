"""torch -> ONNX export, validation and the onnxruntime wrapper (installed as ``hepmpm.export``).

- :func:`export_tagger`: a fine-tuning folder (``tagger.pt`` + ``tagger.json``) → a validated
  ONNX file in the ``hepmpm`` or ``cmssw`` layout (+ ``preprocess.json``).
- :func:`quantize_model`: int8 / fp16 variants, compared with the float model.
- :class:`OnnxTagger`: the exported model as a ``coffea.ml_tools`` wrapper (numpy, awkward,
  dask-awkward), checking its metadata against the features it is given.
- :func:`read_model_info`: the metadata of an exported file.

The names import on first use: an analysis worker that runs :class:`OnnxTagger` needs
onnxruntime, not torch.
"""

from __future__ import annotations

from hepmpm.lazy import lazy_attributes

_WHERE = {
    "ModelInfo": "metadata",
    "read_model_info": "metadata",
    "ExportReport": "onnx_export",
    "export_tagger": "onnx_export",
    "OnnxTagger": "onnx_tagger",
    "scores_of": "onnx_tagger",
    "QuantizeReport": "quantize",
    "quantize_model": "quantize",
}

__all__ = sorted(_WHERE)

__getattr__ = lazy_attributes("hepmpm.export", _WHERE)
