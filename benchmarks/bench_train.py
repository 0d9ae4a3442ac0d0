"""Training and inference throughput of the MPM models against weaver-core's ParticleTransformer.

    python benchmarks/bench_train.py                       # CPU: tiny, small and ParT
    python benchmarks/bench_train.py --device cuda         # CUDA, bf16 autocast: small, base, ParT
    python benchmarks/bench_train.py --sizes small --steps 5 --threads 2
    python benchmarks/bench_train.py --shards SKIM         # real jets of a part17 skim

Every model gets the same synthetic jets: batch 128 (``--batch``), ``--particles`` slots (50)
of which each jet fills 20-50, part17 features (17 per particle). One training step is
forward + backward + gradient clipping + AdamW step:

- ``hepmpm-SIZE``: the MPM model of ``configs/pretrain/SIZE.yaml`` (its mode and masking),
  predicting a 512-token id at each masked particle (random ids; the tokenizer's own cost is
  not included). Inference: the backbone over whole jets (what a tagger runs).
- ``ParT``: weaver-core's ``ParticleTransformer`` as configured for JetClass (8 blocks of 128,
  pair embedding of the 4-vectors, 2 class-attention blocks, 10 classes; 2.1M parameters),
  cross-entropy on random labels. Inference: its forward pass.

With ``--shards SKIM`` the batch is real jets instead: ``--batch`` jets drawn (seeded) from a
part17 skim's shards with their real multiplicities, padded to the batch's longest jet (at
most ``--particles-cap``, 128), ParT's 4-vectors built from the raw features (pT = exp
part_pt_log, E = exp part_e_log, η = part_deta, φ = part_dphi; pair features are invariant
under the longitudinal boost this leaves out).

Each model runs in its own fresh process, so that peak memory is its own: on the CPU, the
growth of peak RSS (``ru_maxrss``) over the training steps, per jet of the batch (it includes
gradients and AdamW's state, a fixed cost shown as ``state MB``); on CUDA,
``torch.cuda.max_memory_allocated`` above what the model and optimizer held before, per jet.
Ratios are against ParT measured in the same run. Needs ``pip install weaver-core`` (the
``bench`` extra; ``--no-deps`` is enough, ParT needs only torch); without it ParT is skipped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

N_TOKENS = 512
N_CLASSES = 10


@dataclass
class Result:
    model: str
    parameters: int
    train_jets_per_s: float
    infer_jets_per_s: float
    train_mb_per_jet: float
    state_mb: float


def synthetic_jets(batch: int, particles: int, device: str, seed: int = 0) -> dict[str, Any]:
    """Raw part17 features [B, P, 17], mask [B, P], 4-vectors [B, 4, P] (px, py, pz, E)."""
    g = torch.Generator().manual_seed(seed)
    n = torch.randint(20, particles + 1, (batch,), generator=g)
    mask = torch.arange(particles)[None] < n[:, None]
    features = torch.randn(batch, particles, 17, generator=g)
    pt = torch.exp(torch.randn(batch, particles, generator=g)) * 5
    eta = torch.randn(batch, particles, generator=g) * 0.4
    phi = torch.randn(batch, particles, generator=g) * 0.4
    vectors = torch.stack(
        [pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta), pt * torch.cosh(eta)], 1
    )
    vectors = vectors * mask[:, None]
    features = features * mask[..., None]
    return {
        "features": features.to(device),
        "mask": mask.to(device),
        "vectors": vectors.to(device),
        "labels": torch.randint(0, N_CLASSES, (batch,), generator=g).to(device),
    }


def shard_jets(skim: str, batch: int, cap: int, device: str, seed: int = 0) -> dict[str, Any]:
    """``batch`` real jets of a part17 skim, as :func:`synthetic_jets` returns them."""
    from pathlib import Path

    import numpy as np
    import pyarrow.parquet as pq

    from hepmpm.data.loader import pad_particles
    from hepmpm.data.shards import particle_features
    from hepmpm.features import PART17

    manifest = json.loads((Path(skim) / "manifest.json").read_text())
    if manifest["feature_set"] != "part17":
        raise SystemExit(f"{skim}: feature set {manifest['feature_set']}, ParT needs part17")
    parts = [particle_features(pq.read_table(Path(skim) / s["path"])["particles"])
             for s in manifest["shards"]]  # fmt: skip
    flat = np.concatenate([f for f, _ in parts])
    counts = np.concatenate([np.diff(o) for _, o in parts])
    starts = np.cumsum(counts) - counts
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(counts), size=min(batch, len(counts)), replace=False)
    features, mask = pad_particles(flat, starts[pick], np.minimum(counts[pick], cap))
    features, mask = torch.from_numpy(features), torch.from_numpy(mask)
    names = [f.name for f in PART17.features]
    column = lambda name: features[..., names.index(name)]  # noqa: E731
    pt, energy = torch.exp(column("part_pt_log")), torch.exp(column("part_e_log"))
    eta, phi = column("part_deta"), column("part_dphi")
    vectors = torch.stack(
        [pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta), energy], 1
    )
    return {
        "features": features.to(device),
        "mask": mask.to(device),
        "vectors": (vectors * mask[:, None]).to(device),
        "labels": torch.randint(0, N_CLASSES, (len(pick),)).to(device),
    }


def build_mpm(size: str):
    from hepmpm.config import load_config, resolve_config_path
    from hepmpm.features import PART17
    from hepmpm.models.mpm import MaskedParticleModel, choose_masked, mpm_losses
    from hepmpm.training.pretrain import PretrainConfig

    config = load_config(PretrainConfig, resolve_config_path(size, "pretrain"))
    mpm = config.mpm.model_copy(update={"targets": {"vqvae": 1.0}})
    model = MaskedParticleModel(PART17, config.backbone, mpm, N_TOKENS)

    def train_loss(jets: dict[str, Any]) -> torch.Tensor:
        masked = choose_masked(jets["mask"], mpm.mask_fraction)
        predictions = model(jets["features"], jets["mask"], masked)
        tokens = torch.randint(0, N_TOKENS, (int(masked.sum()),), device=masked.device)
        return mpm_losses(predictions, {"vqvae": tokens})["vqvae"]

    def infer(jets: dict[str, Any]) -> torch.Tensor:
        return model.backbone(jets["features"], jets["mask"])

    return model, model.backbone, train_loss, infer


def build_part():
    from weaver.nn.model.ParticleTransformer import ParticleTransformer

    # weaver's networks/example_ParticleTransformer.py for JetClass (kinpid + 4-vectors).
    model = ParticleTransformer(
        input_dim=17, num_classes=N_CLASSES, pair_input_dim=4, use_pre_activation_pair=False,
        embed_dims=[128, 512, 128], pair_embed_dims=[64, 64, 64], num_heads=8, num_layers=8,
        num_cls_layers=2, block_params=None,
        cls_block_params={"dropout": 0, "attn_dropout": 0, "activation_dropout": 0},
        fc_params=[], activation="gelu", trim=True, for_inference=False,
    )  # fmt: skip

    def forward(jets: dict[str, Any]) -> torch.Tensor:
        x = jets["features"].transpose(1, 2)  # [B, 17, P]
        return model(x, v=jets["vectors"], mask=jets["mask"][:, None].float())

    def train_loss(jets: dict[str, Any]) -> torch.Tensor:
        return F.cross_entropy(forward(jets).float(), jets["labels"])

    return model, model, train_loss, forward


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train and infer ``name`` (``ParT`` or an MPM size) on synthetic jets; in this process."""
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = args.device
    model, counted, train_loss, infer = build_part() if name == "ParT" else build_mpm(name)
    model.to(device).train()
    parameters = sum(p.numel() for p in counted.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    jets = (
        shard_jets(args.shards, args.batch, args.particles_cap, device)
        if args.shards
        else synthetic_jets(args.batch, args.particles, device)
    )
    cuda = device.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def step() -> None:
        with autocast:
            loss = train_loss(jets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    # Gradients and AdamW moments: a fixed cost, not per jet.
    state_mb = 3 * sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _peak_rss_mb()
    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    train_time = time.perf_counter() - start
    if cuda:
        grown = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        grown = _peak_rss_mb() - before
    per_jet = max(grown - state_mb, 0.0) / args.batch

    model.eval()
    with torch.inference_mode(), autocast:
        for _ in range(args.warmup):
            infer(jets)
        sync()
        start = time.perf_counter()
        for _ in range(args.steps):
            infer(jets)
        sync()
        infer_time = time.perf_counter() - start
    label = name if name == "ParT" else f"hepmpm-{name}"
    jets_done = args.batch * args.steps
    return asdict(
        Result(label, parameters, jets_done / train_time, jets_done / infer_time, per_jet, state_mb)
    )


def _in_fresh_process(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (name, args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast)")
    parser.add_argument(
        "--sizes", nargs="+", help="MPM sizes (default cpu: tiny small; cuda: small base)"
    )
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--particles", type=int, default=50, help="particle slots per jet")
    parser.add_argument("--shards", help="a part17 skim folder: real jets instead of synthetic")
    parser.add_argument("--particles-cap", type=int, default=128, help="with --shards")
    parser.add_argument("--steps", type=int, help="timed steps (default cpu 3, cuda 30)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default cpu 1, cuda 5)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-part", action="store_true", help="skip weaver's ParT")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    args.sizes = args.sizes or (["small", "base"] if cuda else ["tiny", "small"])
    args.steps = args.steps or (30 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)

    names = list(args.sizes)
    if not args.no_part:
        try:
            import weaver.nn.model.ParticleTransformer  # noqa: F401
        except ImportError:
            print("weaver-core is not installed (pip install weaver-core --no-deps): no ParT")
        else:
            names.append("ParT")
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    if args.shards:
        sample = shard_jets(args.shards, args.batch, args.particles_cap, "cpu")
        n = sample["mask"].sum(1)
        jets_text = (f"real jets of {args.shards}: {len(n)} per batch, padded to "
                     f"{sample['mask'].shape[1]} ({float(n.float().mean()):.1f} particles on "
                     f"average, {int(n.min())}-{int(n.max())})")  # fmt: skip
    else:
        jets_text = (f"batch {args.batch}, {args.particles} particle slots "
                     f"(20-{args.particles} filled)")  # fmt: skip
    print(
        f"{where}; torch {torch.__version__}; {jets_text}; {args.warmup} warm-up + "
        f"{args.steps} timed steps"
    )
    results = []
    for name in names:
        results.append(_in_fresh_process(name, args))
        r = results[-1]
        print(f"  measured {r['model']}: {r['train_jets_per_s']:.1f} jets/s training", flush=True)
    part = next((r for r in results if r["model"] == "ParT"), None)
    header = f"{'model':<14}{'params':>10}{'train jets/s':>14}{'infer jets/s':>14}"
    header += f"{'train MB/jet':>14}{'state MB':>10}"
    if part:
        header += f"{'train x ParT':>14}{'infer x ParT':>14}"
    print(header)
    for r in results:
        line = (
            f"{r['model']:<14}{r['parameters']:>10,}{r['train_jets_per_s']:>14.1f}"
            f"{r['infer_jets_per_s']:>14.1f}{r['train_mb_per_jet']:>14.2f}{r['state_mb']:>10.1f}"
        )
        if part:
            line += f"{r['train_jets_per_s'] / part['train_jets_per_s']:>14.2f}"
            line += f"{r['infer_jets_per_s'] / part['infer_jets_per_s']:>14.2f}"
        print(line)
    if args.json:
        with open(args.json, "w") as file:  # noqa: PTH123
            json.dump({"device": where, "settings": vars(args), "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
