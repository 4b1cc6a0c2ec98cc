#!/usr/bin/env bash
# Issue "EM family" experiment: every method on binarized MNIST, same model (784-200-200-50), same K,
# same number of updates; test log-likelihood by the K = 5000 IW bound. Budget set for a 2-core CPU
# session: the first 10000 training images, 5 epochs (2500 updates of batch 20). Scale EPOCHS and
# TRAIN_LIMIT up for a longer budget (the IWEM annealing step is set so that alpha reaches 1 halfway).
set -euo pipefail
EPOCHS=${EPOCHS:-5}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
EVAL_LIMIT=${EVAL_LIMIT:-500}
K=${K:-50}
OUT=${OUT:-runs/em-family-mnist}
DATA=${DEEPEM_DATA:-../shared/data}
ALPHA_EVERY=$(( EPOCHS * TRAIN_LIMIT / 20 / 200 ))
.venv/bin/deepem --threads 1 compare --dataset binarized-mnist --data-dir "$DATA" \
  --methods "vae,iwae,iwae-dreg,rws,rem-v1,rem-v2,iwem:alpha_every=${ALPHA_EVERY},iwem-woo:alpha_every=${ALPHA_EVERY},iwem-woa" \
  --particles "$K" --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" --eval-particles 5000 --eval-limit "$EVAL_LIMIT" \
  --out "$OUT" --force --quiet
