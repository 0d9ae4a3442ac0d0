"""Device, precision and CPU-thread choices shared by every Lightning run (tokenizer,
pre-training, fine-tuning)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def uses_cuda(accelerator: str) -> bool:
    """Whether a run with this ``accelerator`` (auto, cpu, gpu, cuda) trains on CUDA."""
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


def resolve_precision(accelerator: str, precision: str) -> str:
    """``auto``: bf16 autocast on CUDA, full float32 elsewhere; anything else as given."""
    if precision != "auto":
        return precision
    return "bf16-mixed" if uses_cuda(accelerator) else "32-true"


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: leave the setting alone)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
