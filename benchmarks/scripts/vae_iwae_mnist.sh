#!/usr/bin/env bash
# Issue "deepem end to end" experiment: VAE (K = 1) and IWAE (K = 5, 50) on binarized MNIST, the
# 784-200-200-50 model, all 50000 training images, the same number of epochs; test log-likelihood by the
# K = 5000 IW bound on a fixed random 1000 of the 10000 test images (and 1000 training images).
# The recorded run trained the three methods as three parallel processes (same commands, one method each).
set -euo pipefail
EPOCHS=${EPOCHS:-5}
EVAL_LIMIT=${EVAL_LIMIT:-1000}
OUT=${OUT:-runs/vae-iwae-mnist}
DATA=${DEEPEM_DATA:-../shared/data}
.venv/bin/deepem --threads 1 compare --dataset binarized-mnist --data-dir "$DATA" \
  --methods "vae:k=1,iwae:k=5,iwae:k=50" --epochs "$EPOCHS" --eval-particles 5000 --eval-limit "$EVAL_LIMIT" \
  --out "$OUT" --force --quiet
