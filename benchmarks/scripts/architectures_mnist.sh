#!/usr/bin/env bash
# Issue 13: the architectures of the papers at one (tiny) CPU budget, every command with --threads 1.
#  1. IWAE K = 5 and K = 50 with `mlp` (784-200-200-50) and `mlp-2layer` (Burda et al.'s two stochastic
#     layers, 100 + 50 units) on binarized MNIST: the first TRAIN_LIMIT training images for EPOCHS epochs
#     of batch 20; test log-likelihood by the K = 5000 IW bound on a fixed random EVAL_LIMIT test images
#     (`deepem evaluate`; compare's own evaluation is a cheap K = 100 one on the same points).
#  2. `conv` (Tomczak & Welling's gated CNN) and `mlp` with VAE, IWAE and IWEM (K = 5) on binarized MNIST
#     and Caltech 101 silhouettes: the first CONV_TRAIN_LIMIT training images for CONV_EPOCHS epochs of
#     batch 20 (a fixed, small number of steps: conv is ~100x slower per step on a CPU); evaluated by the
#     K = CONV_EVAL_PARTICLES IW bound on a fixed random CONV_EVAL_LIMIT test (and train) images.
#  3. Training throughput of each architecture, interleaved (benchmarks/architecture_throughput.py).
#  4. (STEPS=4) VAE with conv and mlp for 200 updates on MNIST: does conv leave its starting point?
#  The recorded results also ran part 1 at a larger budget:
#     OUT=runs/architectures-full TRAIN_LIMIT=50000 EPOCHS=1 STEPS=1 benchmarks/scripts/architectures_mnist.sh
# No validation during training (--valid-every 0): for conv it would cost more than the training.
# Run from the repository root; NICE=15 by default (the recorded run shared 2 cores with other jobs).
set -euo pipefail
EPOCHS=${EPOCHS:-3}
TRAIN_LIMIT=${TRAIN_LIMIT:-5000}
EVAL_LIMIT=${EVAL_LIMIT:-500}
CONV_EPOCHS=${CONV_EPOCHS:-1}
CONV_TRAIN_LIMIT=${CONV_TRAIN_LIMIT:-400}
CONV_EVAL_PARTICLES=${CONV_EVAL_PARTICLES:-50}
CONV_EVAL_LIMIT=${CONV_EVAL_LIMIT:-20}
OUT=${OUT:-runs/architectures}
DATA=${DEEPEM_DATA:-../shared/data}
NICE=${NICE:-15}
STEPS=${STEPS:-1,2,3}  # which of the three parts to run
DEEPEM=(nice -n "$NICE" .venv/bin/deepem --threads 1)

if [[ ,$STEPS, == *,1,* ]]; then
  for arch in mlp mlp-2layer; do
    "${DEEPEM[@]}" compare --dataset binarized-mnist --data-dir "$DATA" --architecture "$arch" \
      --methods "iwae:k=5,iwae:k=50" --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" --valid-every 0 \
      --eval-particles 100 --eval-limit "$EVAL_LIMIT" --out "$OUT/mnist-$arch" --force --quiet
    for run in iwae-k5 iwae-k50; do
      "${DEEPEM[@]}" evaluate "$OUT/mnist-$arch/$run" --data-dir "$DATA" --particles 5000 --split test \
        --limit "$EVAL_LIMIT" --quiet
    done
  done
fi

if [[ ,$STEPS, == *,2,* ]]; then
  for dataset in binarized-mnist caltech101; do
    for arch in conv mlp; do
      "${DEEPEM[@]}" compare --dataset "$dataset" --data-dir "$DATA" --architecture "$arch" \
        --methods "vae:k=1,iwae:k=5,iwem:k=5" --epochs "$CONV_EPOCHS" --train-limit "$CONV_TRAIN_LIMIT" \
        --valid-every 0 --eval-particles "$CONV_EVAL_PARTICLES" --eval-limit "$CONV_EVAL_LIMIT" \
        --out "$OUT/$dataset-small-$arch" --force --quiet
    done
  done
fi

if [[ ,$STEPS, == *,3,* ]]; then
  DEEPEM_DATA="$DATA" nice -n "$NICE" .venv/bin/python benchmarks/architecture_throughput.py --threads 1 \
    --methods vae:k=1 iwae:k=5 iwem:k=5 --batch 20 --repeats 3 --round-seconds 0.5 --out "$OUT/throughput"
  # K = 50 for the two MLPs only (a conv step at K = 50 takes ~30 s here)
  DEEPEM_DATA="$DATA" nice -n "$NICE" .venv/bin/python benchmarks/architecture_throughput.py --threads 1 \
    --architectures mlp mlp-2layer --methods iwae:k=50 --batch 20 --repeats 5 --round-seconds 0.5 \
    --out "$OUT/throughput-k50"
fi

# 4 (not in the default STEPS): VAE only, conv beside mlp, for ten times the updates of part 2 on MNIST
if [[ ,$STEPS, == *,4,* ]]; then
  for arch in conv mlp; do
    "${DEEPEM[@]}" compare --dataset binarized-mnist --data-dir "$DATA" --architecture "$arch" \
      --methods "vae:k=1" --epochs 1 --train-limit "${VAE_TRAIN_LIMIT:-4000}" --valid-every 0 \
      --eval-particles "$CONV_EVAL_PARTICLES" --eval-limit "$CONV_EVAL_LIMIT" \
      --out "$OUT/binarized-mnist-vae-$arch" --force --quiet
  done
fi

# Tables (per-layer active units, paired differences on the same test points) from the run folders
.venv/bin/python benchmarks/architectures_report.py --json "$OUT/tables.json" "$OUT" > "$OUT/tables.md"
