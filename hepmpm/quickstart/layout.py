"""Where each step of the quickstart writes, under its output folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Where each step writes, under the quickstart's output folder."""

    root: Path

    def sample(self, domain: str) -> Path:
        return self.root / "samples" / domain

    def skim(self, domain: str) -> Path:
        return self.root / "skims" / domain

    def tagger(self, arm: str, labels: int) -> Path:
        """The training folder of the ``arm`` tagger (pretrained, adapted, scratch) on ``labels``
        jets."""
        return self.root / "taggers" / f"{arm}-n{labels}"

    @property
    def model(self) -> Path:
        return self.root / "model" / "tagger.onnx"

    @property
    def tag(self) -> Path:
        return self.root / "tag"

    @property
    def report(self) -> Path:
        return self.root / "report"
