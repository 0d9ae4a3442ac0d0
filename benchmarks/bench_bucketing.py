"""Pre-training steps on real jets: batches bucketed by multiplicity against random batches.

    python benchmarks/bench_bucketing.py --skim SKIM [--config compact] [--steps 30]
        [--rounds 3] [--threads 2] [--pair-bias]

The same pre-training step (``configs/pretrain/CONFIG.yaml``: its model, masking and targets;
forward, backward, AdamW) runs on the training batches of a part17 skim as ``JetDataset``
draws them, once with ``data.bucket`` off (each batch padded to its longest jet) and once on
(jets of similar multiplicity batched within each shuffle block), the same shuffle, seed and
number of batches. Reported per loader: the particle slots per batch, the fraction of them that
is padding, and training jets/s; the ratio bucketed / random is the figure. ``--pair-bias``
adds the bucketed step with ``backbone.pair_bias`` on (ParT's pair features: their cost on
real multiplicities). The loaders run in interleaved rounds, best of each, so the load of a
shared machine falls on all alike; batches are read before the clock starts.
"""

from __future__ import annotations

import argparse
import time

import torch

from hepmpm.config import resolve_config
from hepmpm.data.loader import JetDataset, make_dataloader
from hepmpm.training.pretrain import MPMModule, PretrainConfig


def batches(skim: str, config: PretrainConfig, bucket: bool, steps: int) -> list:
    """The first ``steps`` training batches the loader draws (read into memory)."""
    dataset = JetDataset(
        skim, "train", config.data.batch_size, shuffle=True, bucket=bucket, seed=0,
        shuffle_buffer=config.data.shuffle_buffer, drop_last=True,
    )  # fmt: skip
    out = []
    for batch in make_dataloader(dataset):
        out.append(batch)
        if len(out) == steps:
            return out
    raise SystemExit(f"{skim} has fewer than {steps} training batches")


def jets_per_second(module: MPMModule, loaded: list) -> float:
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)
    module.train()
    start = time.perf_counter()
    for batch in loaded:
        loss = module._step(batch)[0]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return sum(len(b.mask) for b in loaded) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skim", required=True, help="a part17 skim folder of real jets")
    parser.add_argument("--config", default="compact", help="pre-training config")
    parser.add_argument("--steps", type=int, default=30, help="timed batches per loader")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pair-bias", action="store_true", help="also time backbone.pair_bias")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve_config(PretrainConfig, args.config, "pretrain")
    arms = {"random batches": (False, config), "bucketed": (True, config)}
    if args.pair_bias:
        paired = resolve_config(PretrainConfig, config, "pretrain", ["backbone.pair_bias=true"])
        arms["bucketed + pair_bias"] = (True, paired)
    loaded = {name: batches(args.skim, c, bucket, args.steps) for name, (bucket, c) in arms.items()}
    if loaded["bucketed"][0].features.shape[-1] != 17:
        raise SystemExit(f"{args.skim}: bench_bucketing needs a part17 skim")
    modules = {}
    for name, (_, c) in arms.items():
        torch.manual_seed(0)
        modules[name] = MPMModule("part17", c.model_dump(), None, None)
    for name in arms:  # warm-up: allocator, kernels
        jets_per_second(modules[name], loaded[name][:2])
    best = dict.fromkeys(arms, 0.0)
    for _ in range(args.rounds):
        for name in arms:
            best[name] = max(best[name], jets_per_second(modules[name], loaded[name]))
    print(f"{args.skim}: config {args.config}, batch {config.data.batch_size}, {args.steps} "
          f"batches per loader, {args.threads} threads, best of {args.rounds} rounds")  # fmt: skip
    for name, loaded_batches in loaded.items():
        slots = sum(b.mask.numel() for b in loaded_batches)
        real = sum(int(b.mask.sum()) for b in loaded_batches)
        width = slots / sum(len(b.mask) for b in loaded_batches)
        print(f"  {name:22s} {width:6.1f} slots per jet, {1 - real / slots:5.1%} padding, "
              f"{best[name]:7.1f} jets/s, x{best[name] / best['random batches']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
