"""hepmpm: masked particle modeling for collider jets.

Generate or skim jets from NanoAOD-style ROOT files, pre-train a transformer backbone by
masked particle modeling, fine-tune it into taggers and deploy them with ONNX.
"""

from hepmpm.lazy import lazy_attributes

__version__ = "0.1.0"

#: ``hepmpm.tag_fatjets(events, tagger)``: per-FatJet scores inside any coffea processor
#: (imported on first use: ``import hepmpm`` stays light).
__all__ = ["__version__", "tag_fatjets"]

__getattr__ = lazy_attributes("hepmpm", {"tag_fatjets": "processors.fatjet_scores"})
