"""torch -> ONNX export, validation and the onnxruntime wrapper (installed as ``hepmpm.export``).

- :func:`export_tagger`: a fine-tuning folder (``tagger.pt`` + ``tagger.json``) → a validated
  ONNX file in the ``hepmpm`` or ``cmssw`` layout (+ ``preprocess.json``).
- :func:`quantize_model`: int8 / fp16 variants, compared with the float model.
- :class:`OnnxTagger`: the exported model as a ``coffea.ml_tools`` wrapper (numpy, awkward,
  dask-awkward), checking its metadata against the features it is given.
- :func:`read_model_info`: the metadata of an exported file.
"""

from hepmpm.export.metadata import ModelInfo, read_model_info
from hepmpm.export.onnx_export import ExportReport, export_tagger
from hepmpm.export.onnx_tagger import OnnxTagger, scores_of
from hepmpm.export.quantize import QuantizeReport, quantize_model

__all__ = [
    "ExportReport",
    "ModelInfo",
    "OnnxTagger",
    "QuantizeReport",
    "export_tagger",
    "quantize_model",
    "read_model_info",
    "scores_of",
]
