#!/usr/bin/env bash
# What one short GPU lease (minutes, one CUDA device, many cores) proves and makes, in one go:
#   1. a pre-training corpus of sim jets generated on every core (hepmpm generate) and skimmed
#      through coffea's futures executor (hepmpm skim), with a small labelled probe sample;
#   2. training/inference throughput on those real jets, bf16 autocast, of hepmpm's compact,
#      small and base models against weaver-core's ParT (benchmarks/bench_train.py);
#   3. the CPU study's best pre-training recipe (compact, standardised inputs, 60 % masked,
#      label_efficiency_mask60) on the GPU, bf16, sized to PRETRAIN_SECONDS from the measured
#      throughput: many times the jets the 2-core study sees in its 3000 steps of 128, with the
#      online probe (against its random-init twins) logged along the way.
# Everything it reports lands in $OUT (at most 8 files: the log, the throughput JSON and a
# tarball of the pre-training without its checkpoints). Sizes come from the environment, so
# the same script runs in seconds on a CPU (the check before a lease):
#   OUT=/tmp/gpu JETS_PER_CLASS=60 PROBE_JETS_PER_CLASS=60 PROBE_LABELS=40 PROBE_SCORE_JETS=8 \
#     WORKERS=2 PRETRAIN_SECONDS=20 BATCH=64 DEVICE=cpu PY=python bash benchmarks/gpu_lease.sh
# On a machine without hepmpm's dependencies, install them as wheels with `pip install --target
# DIR` first; Pythia then needs PYTHIA8DATA=DIR/share/Pythia8/xmldoc to find its data.
set -uo pipefail
OUT=${OUT:?set OUT, the folder the results go to}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-$(nproc)}
JETS_PER_CLASS=${JETS_PER_CLASS:-25000}   # 100k jets: the 2-core studies' corpus size
PROBE_JETS_PER_CLASS=${PROBE_JETS_PER_CLASS:-2500}
PROBE_LABELS=${PROBE_LABELS:-1000}          # probe fit jets (train split)
PROBE_SCORE_JETS=${PROBE_SCORE_JETS:-800}   # probe score jets (val split: ~10 % of the sample)
PRETRAIN_SECONDS=${PRETRAIN_SECONDS:-150}
BATCH=${BATCH:-512}
WORK=${WORK:-/tmp/hepmpm-lease}
CLASSES=QCD,Hbb,Wqq,Tbqq
mkdir -p "$OUT" "$WORK"
exec > >(tee -a "$OUT/lease.log") 2>&1
stamp() { echo "[$(date +%T)] $*"; }

stamp "device"
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  accelerator=gpu
else
  accelerator=cpu
fi
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"

stamp "generate: corpus ($JETS_PER_CLASS per class) and probe sample, $WORKERS workers"
# Seeds other than the CPU studies' (corpus 11, labelled 12): new jets of the same sim preset.
$PY -m hepmpm generate --preset sim --classes $CLASSES --jets-per-class "$JETS_PER_CLASS" \
  --seed 51 --workers "$WORKERS" --compression lz4:1 --no-progress --out "$WORK/corpus" || exit 1
$PY -m hepmpm generate --preset sim --classes $CLASSES --jets-per-class "$PROBE_JETS_PER_CLASS" \
  --seed 52 --workers "$WORKERS" --compression lz4:1 --no-progress --out "$WORK/probe" || exit 1
stamp "skim"
for sample in corpus probe; do
  $PY -m hepmpm skim "$WORK/$sample" --out "$WORK/skim-$sample" --executor futures \
    --workers "$WORKERS" --no-progress || exit 1
done

stamp "throughput on real jets (batch $BATCH)"
sizes="compact small base"
[ "$DEVICE" = cpu ] && sizes="compact"
$PY "$(dirname "$0")/bench_train.py" --device "$DEVICE" --sizes $sizes --batch "$BATCH" \
  --shards "$WORK/skim-corpus" --json "$OUT/bench_train.json"

# Steps that fill PRETRAIN_SECONDS at the compact model's measured rate, less a third for
# validation, the probe and the data pipeline (or PRETRAIN_STEPS).
steps=${PRETRAIN_STEPS:-$($PY -c "
import json
rate = next(r['train_jets_per_s'] for r in json.load(open('$OUT/bench_train.json'))['results']
            if r['model'].endswith('compact'))
print(max(50, int(rate * $PRETRAIN_SECONDS * 2 / 3 / $BATCH) // 50 * 50))")}
every=$(( steps / 5 > 10 ? steps / 5 : 10 ))  # five validations, each with the probe
stamp "pre-train compact (stdin, 60 % masked) for $steps steps of $BATCH on $accelerator"
$PY -m hepmpm pretrain --config compact --data "$WORK/skim-corpus" --out "$WORK/pretrain" \
  --no-progress --set backbone.standardise_inputs=true --set mpm.mask_fraction=0.6 \
  --set trainer.accelerator=$accelerator --set trainer.cpu_threads=null \
  --set trainer.max_steps=$steps --set trainer.val_every_steps=$every \
  --set optimizer.warmup_steps=$(( steps / 150 * 10 )) --set data.batch_size=$BATCH \
  --set data.num_workers=4 --set probe.skim="$WORK/skim-probe" \
  --set probe.labels=$PROBE_LABELS --set probe.score_jets=$PROBE_SCORE_JETS || exit 1
tar -czf "$OUT/pretrain.tar.gz" -C "$WORK" --exclude=checkpoints pretrain
stamp "done"
