#!/usr/bin/env bash
# Discrete-latent experiment: a sigmoid belief net with 200 binary latents and linear (logistic) layers,
# the SBN of the NVIL and VIMCO papers, on binarized MNIST, trained by every method that accepts binary
# latents at one CPU budget: the first TRAIN_LIMIT training images for EPOCHS epochs of batch 20.
# Test log-likelihood by the K = 5000 IW bound (q is a factorised Bernoulli, which has a density).
set -euo pipefail
EPOCHS=${EPOCHS:-5}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
EVAL_LIMIT=${EVAL_LIMIT:-500}
OUT=${OUT:-runs/sbn-mnist}
DATA=${DEEPEM_DATA:-../shared/data}
.venv/bin/deepem --threads 1 compare --dataset binarized-mnist --data-dir "$DATA" \
  --methods "nvil,vimco:k=5,vimco:k=50,rws:k=5,rws:k=50,wake-sleep" \
  --latent bernoulli --latent-dim 200 --hidden "" --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" \
  --eval-particles 5000 --eval-limit "$EVAL_LIMIT" --out "$OUT" --force --quiet
