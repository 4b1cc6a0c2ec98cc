#!/usr/bin/env bash
# Issue 11 experiment: implicit posteriors (AVB, IWAVB) beside IWAE on binarized MNIST, the shape of
# Table 1 of Gómez-Sancho & Hernández-Lobato (2020): latent 8 and 32, K = 1, 5, 10, one CPU budget each
# (same data, same number of updates, same θ/φ learning rate). Test log-likelihood by AIS from the prior
# on a fixed subset for every run (IW refuses implicit encoders), IW-5000 for the IWAE runs on the same
# points, BDMC on data simulated from one model of each kind to bound the error of these AIS settings.
# Budget set for a loaded 2-core CPU session (about 35 min of one core in all); sizes override by env.
# Settings (see benchmarks/results/avb_mnist.md): Adam 1e-3 for θ and φ (the paper's 5e-5 learns too
# little in 1000 updates), 2e-3 for the discriminator, one T step per batch. The recorded passes:
#   benchmarks/scripts/avb_mnist.sh                                        # no contrast, latents 8 and 32
#   IWAE=0 CONTRAST=true LATENTS=8 BDMC_LATENT=none OUT=runs/avb-mnist-ac benchmarks/scripts/avb_mnist.sh
#   DIAG=1 benchmarks/scripts/avb_mnist.sh          # explicit q: T's KL estimate against the exact KL
#   python benchmarks/avb_mnist.py runs/avb-mnist runs/avb-mnist-ac --results benchmarks/results
set -euo pipefail
LATENTS=${LATENTS:-"8 32"}
EPOCHS=${EPOCHS:-2}
TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
LR=${LR:-1e-3}            # θ and φ, every method
LR_T=${LR_T:-2e-3}        # the discriminator of avb/iwavb
CONTRAST=${CONTRAST:-false}
AIS_LIMIT=${AIS_LIMIT:-100}
AIS_T=${AIS_T:-300}
AIS_CHAINS=${AIS_CHAINS:-8}
IW_K=${IW_K:-5000}
BDMC_LATENT=${BDMC_LATENT:-8}
BDMC_RUNS=${BDMC_RUNS:-"iwae-k5 iwavb-k5"}
BDMC_POINTS=${BDMC_POINTS:-10}
OUT=${OUT:-runs/avb-mnist}
DATA=${DEEPEM_DATA:-../shared/data}
NICE=${NICE:-15}
IWAE=${IWAE:-1}           # 0: only the implicit runs (e.g. a second pass with CONTRAST=true)
D=(nice -n "$NICE" .venv/bin/deepem --threads 1)
COMMON=(--dataset binarized-mnist --data-dir "$DATA" --train-limit "$TRAIN_LIMIT" --epochs "$EPOCHS"
        --valid-every 0 --seed 0 --force --quiet)

stream() {  # every run of one latent dimension: train all, then evaluate all
  local l=$1 dir="$OUT/l$1"
  mkdir -p "$dir"
  for k in 1 5 10; do
    [ "$IWAE" = 1 ] || break
    "${D[@]}" train --method iwae -k "$k" --latent-dim "$l" --lr "$LR" "${COMMON[@]}" --out "$dir/iwae-k$k"
  done
  for mk in avb:1 iwavb:5 iwavb:10; do
    local m=${mk%%:*} k=${mk##*:}
    "${D[@]}" train --method "$m" -k "$k" --encoder implicit --latent-dim "$l" "${COMMON[@]}" \
      --optim theta:lr="$LR" --optim phi:lr="$LR" --optim discriminator:lr="$LR_T" \
      -o adaptive_contrast="$CONTRAST" --out "$dir/$m-k$k"
  done
  for run in "$dir"/*-k*; do
    "${D[@]}" evaluate "$run" --estimator ais --ais-initial prior --temperatures "$AIS_T" \
      --chains "$AIS_CHAINS" --limit "$AIS_LIMIT" --data-dir "$DATA" --quiet
  done
  for run in "$dir"/iwae-k*; do
    [ -d "$run" ] || continue
    "${D[@]}" evaluate "$run" --estimator iw --particles "$IW_K" --limit "$AIS_LIMIT" --data-dir "$DATA" --quiet
  done
  if [ "$l" = "$BDMC_LATENT" ]; then
    for r in $BDMC_RUNS; do
      "${D[@]}" bdmc "$dir/$r" --points "$BDMC_POINTS" --temperatures "$AIS_T" --chains "$AIS_CHAINS" \
        --data-dir "$DATA" --quiet | tee "$dir/$r/bdmc.txt"
    done
  fi
}

diagnose() {  # AVB with an explicit Gaussian q: T's KL estimate against the exact KL(q || p(z)) of IW-eval
  local n=$1; shift
  "${D[@]}" train --method avb -k 1 --latent-dim 8 "${COMMON[@]}" --optim theta:lr="$LR" --optim phi:lr="$LR" \
    --optim discriminator:lr="$LR_T" "$@" --out "$OUT-diag/l8-avb-explicit$n"
  "${D[@]}" evaluate "$OUT-diag/l8-avb-explicit$n" --estimator iw --particles "$IW_K" --limit "$AIS_LIMIT" \
    --data-dir "$DATA" --quiet
  tail -n 1 "$OUT-diag/l8-avb-explicit$n/metrics.jsonl"
}

if [ "${DIAG:-0}" = 1 ]; then  # DIAG=1: only the explicit-q check of the discriminator (3 short runs)
  diagnose "" ; diagnose -ac -o adaptive_contrast=true ; diagnose -tsteps5 --optim discriminator:steps=5
  exit 0
fi
mkdir -p "$OUT"
pids=()
for l in $LATENTS; do stream "$l" > "$OUT.l$l.log" 2>&1 & pids+=($!); done  # one stream per latent, in parallel
for p in "${pids[@]}"; do wait "$p" || { echo "a stream failed: see $OUT.l*.log" >&2; exit 1; }; done
.venv/bin/python benchmarks/avb_mnist.py "$OUT"
