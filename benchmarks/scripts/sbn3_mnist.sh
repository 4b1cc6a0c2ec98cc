#!/usr/bin/env bash
# Stacked sigmoid belief net: three layers of 200 binary units with linear (logistic) conditionals both
# ways (--architecture sbn), the 200-200-200 SBN of the NVIL (Mnih & Gregor 2014) and VIMCO (Mnih &
# Rezende 2016) papers, on binarized MNIST, at the budget of sbn_mnist.sh (the one-layer SBN-200): the first
# TRAIN_LIMIT training images for EPOCHS epochs of batch 20, test log-likelihood by the K = 5000 IW bound.
set -euo pipefail
EPOCHS=${EPOCHS:-5}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
EVAL_LIMIT=${EVAL_LIMIT:-500}
OUT=${OUT:-runs/sbn3-mnist}
DATA=${DEEPEM_DATA:-../shared/data}
.venv/bin/deepem --threads 1 compare --dataset binarized-mnist --data-dir "$DATA" \
  --methods "nvil,vimco:k=5,vimco:k=50,rws:k=5,rws:k=50,wake-sleep" \
  --latent bernoulli --architecture sbn --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" \
  --eval-particles 5000 --eval-limit "$EVAL_LIMIT" --out "$OUT" --force --quiet
