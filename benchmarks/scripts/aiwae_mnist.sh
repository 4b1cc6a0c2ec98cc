#!/usr/bin/env bash
# Issue "HMC and AIS" experiment: IWAE against AIWAE (T = 5 and 11 temperatures, L = 5 leapfrog steps)
# with K = 5 on binarized MNIST, same model and number of updates; test log-likelihood by the K = 5000
# IW bound and by AIS (16 chains, T_eval temperatures, from the prior, Wu et al. 2016), the variational
# gap (AIS - IW on the same points), the generalisation gap, active units, throughput.
# Budget set for a 2-core CPU session: the first 10000 training images, 5 epochs (2500 updates).
set -euo pipefail
EPOCHS=${EPOCHS:-5}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
EVAL_LIMIT=${EVAL_LIMIT:-500}
AIS_LIMIT=${AIS_LIMIT:-100}
AIS_T=${AIS_T:-500}
OUT=${OUT:-runs/aiwae-mnist}
DATA=${DEEPEM_DATA:-../shared/data}
.venv/bin/deepem --threads 1 compare --dataset binarized-mnist --data-dir "$DATA" \
  --methods "iwae,aiwae:temperatures=5,aiwae:temperatures=11" \
  --particles 5 --epochs "$EPOCHS" --train-limit "$TRAIN_LIMIT" --eval-particles 5000 --eval-limit "$EVAL_LIMIT" \
  --out "$OUT" --force --quiet
for run in "$OUT"/iwae "$OUT"/aiwae-*; do
  .venv/bin/deepem --threads 1 evaluate "$run" --estimator ais --temperatures "$AIS_T" --chains 16 \
    --limit "$AIS_LIMIT" --data-dir "$DATA" --quiet
done
.venv/bin/python benchmarks/collect_results.py aiwae "$OUT" > "$OUT/ais_table.md"
cat "$OUT/ais_table.md"
