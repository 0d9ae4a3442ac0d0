"""The frozen arm's backbone outputs, computed once per jet.

A frozen backbone (evaluation mode, no gradient, never updated) gives every jet the same
outputs at every step, so fine-tuning only the head need not run it again: a labelled set of
N jets seen for hundreds of epochs costs N backbone passes instead of one per jet per step.
:class:`FrozenOutputs` keeps each jet's particle outputs [n, D] (its real particles) and register
outputs [R, D] by ``jet_id`` and assembles a batch's padded outputs from them; jets beyond
``limit`` are computed at every step, as without the store.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FrozenOutputs:
    """Backbone outputs per jet (by the batch's ``jet_id``), for at most ``limit`` jets."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.store: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, backbone: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Particle outputs [B, P, D] (zero at padded slots) and register outputs [B, R, D]
        of the jets of ``batch`` (features [B, P, F], mask [B, P], real particles first)."""
        ids = batch.jet_id.tolist()
        counts = batch.mask.sum(1).tolist()
        missing = [i for i, jet in enumerate(ids) if jet not in self.store]
        computed: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if missing:
            rows = torch.tensor(missing, device=batch.mask.device)
            with torch.no_grad():
                particles, registers = backbone(batch.features[rows], batch.mask[rows])
            for k, i in enumerate(missing):
                outputs = (particles[k, : counts[i]].clone(), registers[k].clone())
                computed[i] = outputs
                if len(self.store) < self.limit:
                    self.store[ids[i]] = outputs
        first = computed[missing[0]] if missing else self.store[ids[0]]
        dim, n_registers = first[0].shape[-1], first[1].shape[0]
        out = first[0].new_zeros(len(ids), batch.mask.shape[1], dim)
        registers_out = first[1].new_zeros(len(ids), n_registers, dim)
        for i, jet in enumerate(ids):
            particles_i, registers_i = computed.get(i) or self.store[jet]
            out[i, : counts[i]] = particles_i
            registers_out[i] = registers_i
        return out, registers_out
