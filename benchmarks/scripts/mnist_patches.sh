#!/usr/bin/env bash
# The IWEM paper's Table 3 analogue: static binarized MNIST with N of the 3x3 patches of every training
# (and validation) image removed, N = 3..6; miwae, miss-iwem-woa and miss-iwem at one CPU budget (the first
# TRAIN_LIMIT training images, EPOCHS epochs of batch 20, K particles); test log-likelihood of the COMPLETE
# test images by the K = 5000 IW bound on a fixed random EVAL_LIMIT of them (what Table 3 reports, see the
# README), and the imputation figure of the corrupted test copy for the largest N.
set -euo pipefail
EPOCHS=${EPOCHS:-3}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
EVAL_LIMIT=${EVAL_LIMIT:-500}
K=${K:-10}
PATCHES=${PATCHES:-"3 4 5 6"}
OUT=${OUT:-runs/mnist-patches}
DATA=${DEEPEM_DATA:-../shared/data}
UPDATES=$(( EPOCHS * TRAIN_LIMIT / 20 ))
ALPHA_EVERY=$(( UPDATES / 200 > 0 ? UPDATES / 200 : 1 ))  # α reaches 1 at half the updates
for N in $PATCHES; do
  .venv/bin/deepem --threads 1 compare --dataset binarized-mnist --data-dir "$DATA" --missing "patches:$N" \
    --methods "miwae,miss-iwem-woa,miss-iwem:alpha_every=${ALPHA_EVERY}" --particles "$K" \
    --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" --eval-particles 5000 --eval-limit "$EVAL_LIMIT" \
    --out "$OUT/patches$N" --force --quiet
done
LAST=$(echo "$PATCHES" | awk '{print $NF}')
.venv/bin/deepem impute "$OUT/patches$LAST/miss-iwem-alphaevery${ALPHA_EVERY}" --split test --particles 1000
