"""hepmpm: masked particle modeling for collider jets.

Generate or skim jets from NanoAOD-style ROOT files, pre-train a transformer backbone by
masked particle modeling, fine-tune it into taggers and deploy them with ONNX.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
