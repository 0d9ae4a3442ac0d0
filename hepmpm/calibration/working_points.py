"""Working points: score thresholds at a requested QCD mistag rate or signal efficiency.

The score is the one-vs-background discriminant of the metrics,
``d = p_s / (p_s + p_B)`` (:func:`hepmpm.evaluation.metrics.versus_background_score`); a jet
**passes** a working point when ``d >= threshold``. Thresholds are fixed on simulation:

- ``mistag=X``: the loosest threshold whose background (QCD) pass fraction is at most ``X``;
- ``eff=X``: the tightest threshold whose signal pass fraction is at least ``X``.

A threshold lies half-way between the two neighbouring jet scores it separates, so a jet's
pass decision does not hang on the last bit of its float32 score. Ties are never split.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from hepmpm.errors import HepmpmError

Kind = Literal["mistag", "eff"]
KINDS: tuple[str, ...] = ("mistag", "eff")


@dataclass(frozen=True)
class WorkingPointSpec:
    """A requested working point: ``kind`` (``mistag`` or ``eff``) and its target in (0, 1)."""

    kind: Kind
    target: float

    @property
    def name(self) -> str:
        """``mistag0p01``, ``eff0p5``: usable in correction and file names."""
        return f"{self.kind}{format(self.target, 'g').replace('.', 'p').replace('-', 'm')}"


@dataclass(frozen=True)
class WorkingPoint:
    """A working point fixed on simulation: its threshold on ``d`` and the inclusive pass
    fractions of the simulated signal (``sim_efficiency``) and background (``sim_mistag``)."""

    name: str
    kind: Kind
    target: float
    threshold: float
    sim_efficiency: float
    sim_mistag: float

    def as_dict(self) -> dict[str, float | str]:
        return asdict(self)


def parse_working_points(texts: list[str] | str) -> list[WorkingPointSpec]:
    """``"mistag=0.01,0.05"``, ``"eff=0.5"`` or ``"mistag=0.01,eff=0.5"`` (repeatable) → specs;
    a value without ``KIND=`` takes the kind before it."""
    specs: list[WorkingPointSpec] = []
    for text in [texts] if isinstance(texts, str) else texts:
        kind: str | None = None
        for token in filter(None, (t.strip() for t in text.split(","))):
            if "=" in token:
                kind, token = (part.strip() for part in token.split("=", 1))
            if kind not in KINDS:
                raise HepmpmError(
                    f"working point {text!r}: expected KIND=VALUE[,VALUE...] with KIND one of "
                    f"{', '.join(KINDS)} (e.g. mistag=0.01,0.05), got kind {kind!r}"
                )
            try:
                target = float(token)
            except ValueError:
                raise HepmpmError(f"working point {text!r}: {token!r} is not a number") from None
            if not 0 < target < 1:
                raise HepmpmError(f"working point {kind}={token}: the rate must be in (0, 1)")
            specs.append(WorkingPointSpec(kind, target))  # type: ignore[arg-type]
    if not specs:
        raise HepmpmError("no working point given (e.g. --working-points mistag=0.01,0.05)")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise HepmpmError(f"working points repeat: {', '.join(names)}")
    return specs


def _cut_between(descending: np.ndarray, n_pass: int) -> float:
    """Half-way between the ``n_pass``-th highest score and the next one (1 <= n_pass < n)."""
    return float(0.5 * (descending[n_pass - 1] + descending[n_pass]))


def find_threshold(
    spec: WorkingPointSpec, signal: np.ndarray, background: np.ndarray
) -> WorkingPoint:
    """The working point ``spec`` on simulated discriminants ``signal`` [S] and ``background``
    [B] (higher = more signal-like); an unreachable target is a :class:`HepmpmError`."""
    signal = np.sort(np.asarray(signal, dtype=np.float64))[::-1]
    background = np.sort(np.asarray(background, dtype=np.float64))[::-1]
    if len(signal) == 0 or len(background) == 0:
        raise HepmpmError(
            f"working point {spec.name}: simulation has {len(signal)} signal and "
            f"{len(background)} background jets; both are needed"
        )
    scores = background if spec.kind == "mistag" else signal
    n = len(scores)
    # boundaries[j]: True where a cut can pass exactly the j highest jets (no tie split)
    boundary = np.concatenate([[False], scores[:-1] > scores[1:]])
    if spec.kind == "mistag":
        allowed = math.floor(spec.target * n + 1e-9)
        cuts = np.flatnonzero(boundary[: allowed + 1]) if allowed >= 1 else np.array([], int)
        if len(cuts) == 0:
            reason = (
                f"it needs at least {math.ceil(1 / spec.target)} QCD jets in simulation, "
                f"there are {n}"
                if allowed < 1
                else f"the {allowed + 1} highest QCD scores are tied at {scores[0]:.6g}"
            )
            raise HepmpmError(f"working point {spec.name} cannot be reached: {reason}")
        threshold = _cut_between(scores, int(cuts[-1]))
    else:
        needed = math.ceil(spec.target * n - 1e-9)
        cuts = np.flatnonzero(boundary[needed:]) + needed
        # no boundary at or above `needed`: only keeping every signal jet reaches the target
        threshold = _cut_between(scores, int(cuts[0])) if len(cuts) else float(scores[-1])
    if (background >= threshold).all() and (signal >= threshold).all():
        raise HepmpmError(
            f"working point {spec.name} cannot be reached: its threshold {threshold:.6g} passes "
            "every simulated jet (the scores do not separate signal from background)"
        )
    return WorkingPoint(
        name=spec.name,
        kind=spec.kind,
        target=spec.target,
        threshold=threshold,
        sim_efficiency=float((signal >= threshold).mean()),
        sim_mistag=float((background >= threshold).mean()),
    )
