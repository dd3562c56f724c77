#!/usr/bin/env bash
# Session 12's device runs (one H200), from the repository root, carrying .whl, .shared_data and .realdata/hcp16:
#   start  detached on one GPU: the split-half run on the 7 HCP recordings (issue 14; preset rest_fmri,
#          10 seeds, its generator full_targets) at 250, 500 and 1000 epochs, and at 1000 epochs with checkpoint
#          selection (select_every 25 on 5 rollouts); the README example through the product (rest_fmri, --stack,
#          participant then group) at 500 and 1000 epochs; G1 (σ 0.01) and G2 with the lorenz63 preset's protocol
#          and the reference code's loss (train.loss_states = "reference"), 20 seeds (issue 13).
#          Waits up to WAIT seconds (default 540).
#   cohort detached: the simulated cohorts of issue 14's last target (group_recovery.py, data seeds 0-2, 8 subjects,
#          raw NIfTI through participant and group, preset rest_fmri: 10 seeds stacked, 1000 epochs), with and
#          without checkpoint selection (select_every 25 on 5 rollouts). Waits up to WAIT seconds (default 540).
#   g1long detached: G1 (σ 0.01, the lorenz63 preset's protocol, 20 seeds) with the selection's rollouts 200 000
#          steps long instead of the training part's 74 880 (issue 13: does a finite scoring rollout favour
#          faster-mixing, more chaotic epochs?); and the README example with checkpoint selection (rest_fmri,
#          select_every 25 on 5 rollouts). Waits up to WAIT seconds (default 540).
#   bp     detached: the split-half run of "start" on halves band-passed to 0.01-0.1 Hz (each half on its own) at
#          1000 and 500 epochs, and the README example with --high-pass 0.01 --low-pass 0.1 (issue 14 item 4:
#          which preprocessing gives the best held-out scores beside the references). Waits up to WAIT seconds.
#   oracle in the foreground (as run, about 200 s): G1 σ 0.01 at 2000 epochs, 10 seeds, with the Wiener targets
#          and with oracle targets (the clean latent) in one stack (issue 13: does the deconvolution's error make
#          the models too chaotic?); writes into $OUT/g1
#   wait   waits up to WAIT seconds more, then packs what is there
# How many epochs does rest_fmri need? Judged by held-out scores beside VAR(1) and the data floor (issue 18's
# CPU target would need about half of the preset's 1000).
set -u
MODE=${1:-start}
source benchmarks/device_env.sh "pywt, nibabel, nilearn"
source benchmarks/device_jobs.sh
W=${S12_DIR:-/tmp/s12}
OUT=${OUT:-/tmp/s12_out}
mkdir -p "$W" "$OUT"
JOBS="real_rest.py|dsr.cli|lorenz_protocol.py|group_recovery.py"
DSR="python3 -c 'import sys; from dsr.cli import main; sys.exit(main())'"
RR="benchmarks/real_rest.py .realdata/hcp16 --device cuda --seeds 10 --generators full_targets --main full_targets
 --seed-stats full_targets --out $W/rr"
if [ "$MODE" = start ]; then
  nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
  sed '/^\[train\]/a select_every = 25\nselect_rollouts = 5' configs/rest_fmri.toml > "$W/rest_fmri_select.toml"
  for e in 250 500 1000; do
    setsid nohup python3 $RR --epochs $e --tag _s12_e$e > "$W/rr_e$e.log" 2>&1 < /dev/null &
  done
  setsid nohup python3 $RR --preset "$W/rest_fmri_select.toml" --tag _s12_e1000_select > "$W/rr_select.log" 2>&1 \
    < /dev/null &
  setsid nohup python3 benchmarks/lorenz_protocol.py --parts g1 g2 --noise 0.01 --epochs 5000 --seeds 20 \
    --loss-states reference --eval generation=stochastic --tag _s12_reference --out "$W/g1" > "$W/g1_reference.log" \
    2>&1 < /dev/null &
  for e in 500 1000; do
    setsid nohup bash -c "$DSR data $W/readme_e$e participant --config rest_fmri --stack \
      --device cuda --epochs $e && $DSR data $W/readme_e$e group" > "$W/readme_e$e.log" 2>&1 \
      < /dev/null &
  done
fi
if [ "$MODE" = g1long ]; then
  setsid nohup python3 benchmarks/lorenz_protocol.py --parts g1 --noise 0.01 --epochs 5000 --seeds 20 \
    --loss-states free --eval generation=stochastic --train select_steps=200000 --tag _s12_selectlong \
    --out "$W/g1" > "$W/g1_selectlong.log" 2>&1 < /dev/null &
  setsid nohup bash -c "$DSR data $W/readme_select participant --config rest_fmri --stack --device cuda \
    --set train.select_every=25 --set train.select_rollouts=5 && $DSR data $W/readme_select group" \
    > "$W/readme_select.log" 2>&1 < /dev/null &
fi
if [ "$MODE" = bp ]; then
  for e in 500 1000; do
    setsid nohup python3 $RR --epochs $e --band-pass 0.01 0.1 --tag _s12_bp_e$e > "$W/rr_bp_e$e.log" 2>&1 \
      < /dev/null &
  done
  setsid nohup bash -c "$DSR data $W/readme_bp participant --config rest_fmri --stack --device cuda \
    --high-pass 0.01 --low-pass 0.1 && $DSR data $W/readme_bp group" > "$W/readme_bp.log" 2>&1 < /dev/null &
fi
if [ "$MODE" = oracle ]; then
  mkdir -p "$OUT/g1"
  timeout 285 python3 benchmarks/lorenz_protocol.py --parts g1 --noise 0.01 --epochs 2000 --seeds 10 \
    --loss-states free --targets wiener oracle --eval generation=stochastic --rollouts 10 --device cuda \
    --tag _s12_oracle_e2000 --out "$OUT/g1" 2>&1 | grep -v "^epoch" | tail -20
  exit 0
fi
if [ "$MODE" = cohort ]; then
  GR="benchmarks/group_recovery.py --subjects 8 --volumes 300 --regions 6 --raw --seeds 10 --stack --no-reports
 --threshold 0.9 --preset rest_fmri --device cuda"
  for d in 0 1 2; do
    setsid nohup python3 $GR $W/cohort/d$d --seed $d > "$W/cohort_d$d.log" 2>&1 < /dev/null &
    setsid nohup python3 $GR $W/cohort/d${d}_select --seed $d --set train.select_every=25 \
      --set train.select_rollouts=5 > "$W/cohort_d${d}_select.log" 2>&1 < /dev/null &
  done
fi
wait_jobs "$JOBS" "${WAIT:-540}"
grep -o "held-out D_[a-zA-Z]* is below the VAR[^.]*" "$W"/readme_*/group.html 2>/dev/null
collect "$W" "$OUT/s12.tar.gz" '*.nii.gz' '*_generated-*'  # the cohorts' NIfTI and generated series stay behind
still_running "$JOBS"
