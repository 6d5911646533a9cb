#!/usr/bin/env bash
# The quickstart: the whole pipeline on a CPU-scale maze world, on a 2-core CPU.
#
#   data (maze --preset WORLD) -> TFDS -> VQ-GAN (cpu) -> codes -> TECO (WORLD) -> benchmark report
#
# WORLD=grid (the default): whole-cell moves and quarter turns (maze --preset cpu,
# configs/teco_dmlab.py:cpu); WORLD=smooth: 15-degree turns and 0.15-cell steps, no view ever
# recurs exactly (maze --preset smooth, configs/teco_dmlab.py:smooth; scripts/smooth_demo.sh).
#
# Every stage is a visible call of a real command-line tool. A stage whose output is
# complete is skipped, and training resumes from its last checkpoint, so after an
# interruption (Ctrl-C) the same command carries on where it stopped. Stage times go
# to $RUN/timings.tsv. Sizes can be changed through the environment variables below.
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD=${WORLD:-grid}
case "$WORLD" in
    smooth) MAZE_PRESET=smooth; TECO_PRESET=smooth ;;
    grid) MAZE_PRESET=cpu; TECO_PRESET=cpu ;;
    *) echo "error: WORLD=$WORLD: choose smooth or grid" >&2; exit 2 ;;
esac
RUN=${RUN:-runs/quickstart}
EPISODES=${EPISODES:-1000}    # 128-frame episodes of 32x32 frames; 10% go to the test split
VQ_STEPS=${VQ_STEPS:-1200}    # VQ-GAN training steps (cpu preset, ~4.5 steps/s on 2 cores)
TECO_STEPS=${TECO_STEPS:-1000}  # TECO training steps (~1-1.3 steps/s on 2 cores)
VIDEOS=${VIDEOS:-16}          # test videos in the benchmark (4 groups of 4)
mkdir -p "$RUN"
TIMINGS="$RUN/timings.tsv"

stage() { echo; echo "=== [$(date +%H:%M:%S)] $*"; STAGE_NAME="$1"; STAGE_T0=$(date +%s); }
stage_done() { printf '%s\t%s\n' "$STAGE_NAME" "$(( $(date +%s) - STAGE_T0 ))" >> "$TIMINGS"; }
trained() { [ -d "$1/checkpoints/$2" ]; }  # the checkpoint of the last step exists
built() { ls "$1"/*/1.0.0/teco_meta.json >/dev/null 2>&1; }  # a complete TFDS dataset is there

stage "1/6" "generate $EPISODES maze episodes of the CPU-scale $WORLD world -> $RUN/maze"
python -m data_gen.maze --preset "$MAZE_PRESET" --episodes "$EPISODES" --out "$RUN/maze" --seed 0 --workers 2 \
    --preview "$RUN/maze_contact_sheet.png"
stage_done

stage "2/6" "convert to a TFDS array_record dataset -> $RUN/maze_tfds"
if built "$RUN/maze_tfds"; then
    echo "already built, skipping"
else
    rm -rf "$RUN/maze_tfds"
    python -m teco_jax.data.build --src "$RUN/maze" --out "$RUN/maze_tfds"
fi
stage_done

stage "3/6" "train the VQ-GAN (configs/vqgan_dmlab.py:cpu, $VQ_STEPS steps) -> $RUN/vqgan"
if trained "$RUN/vqgan" "$VQ_STEPS"; then
    echo "already trained, skipping"
else
    python -m teco_jax.train --config configs/vqgan_dmlab.py:cpu --workdir "$RUN/vqgan" \
        --config.data.dir="$RUN/maze_tfds" --config.train.num_steps="$VQ_STEPS" \
        --config.optim.decay_steps="$VQ_STEPS" --config.loss.disc_start=$(( VQ_STEPS * 7 / 8 )) \
        --config.train.eval_every=$(( VQ_STEPS / 2 ))
fi
stage_done

stage "4/6" "pre-encode the dataset into VQ-GAN codes -> $RUN/maze_codes"
if built "$RUN/maze_codes"; then
    echo "already encoded, skipping"
else
    rm -rf "$RUN/maze_codes"
    python -m teco_jax.encode --vqgan "$RUN/vqgan" --data "$RUN/maze_tfds" --out "$RUN/maze_codes" --chunk 128
fi
stage_done

stage "5/6" "train TECO (configs/teco_dmlab.py:$TECO_PRESET, $TECO_STEPS steps) -> $RUN/teco"
if trained "$RUN/teco" "$TECO_STEPS"; then
    echo "already trained, skipping"
else
    python -m teco_jax.train --config "configs/teco_dmlab.py:$TECO_PRESET" --workdir "$RUN/teco" \
        --config.data.dir="$RUN/maze_codes" --config.train.num_steps="$TECO_STEPS" \
        --config.optim.decay_steps="$TECO_STEPS" --config.train.eval_every=$(( TECO_STEPS / 2 ))
fi
stage_done

stage "6/6" "long-range consistency benchmark ($VIDEOS test videos, with baselines) -> $RUN/benchmark"
if [ -f "$RUN/benchmark/results.json" ]; then
    echo "already run, skipping"
else
    python -m eval.benchmark --checkpoint "$RUN/teco" --data "$RUN/maze_tfds" --out "$RUN/benchmark" \
        --num_videos "$VIDEOS" --group_size 4 --no_fvd  # the cpu protocol: 64 context + 64 predicted frames
fi
stage_done

echo
echo "=== done. Seconds per stage (this and earlier invocations) in $TIMINGS:"
cat "$TIMINGS"
echo
echo "report: $RUN/benchmark/report.md   contact sheet: $RUN/maze_contact_sheet.png"
echo "training curves: python -m teco_jax.plot_metrics $RUN/teco --keys train/recon_ce train/prior_ce --out $RUN/teco_curve.png"
