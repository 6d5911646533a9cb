#!/usr/bin/env bash
# The smooth-world CPU recipe on the other worlds, with a held-out benchmark and its
# per-horizon curve (docs/cpu_world.md, "Other worlds"):
#
#   WORLD=dmlab64  the DMLab-style maze (maze --preset dmlab: 64x64 frames, 300-frame episodes,
#                  patterned walls), the tiny 64x64 VQ-GAN (16x16 codes)
#   WORLD=voxel    the Minecraft-style voxel world at CPU size (voxel --preset cpu: 32x32,
#                  128-frame episodes, the returning walk), the cpu VQ-GAN (8x8 codes)
#
# TECO is configs/teco_dmlab.py:smooth (the pose memory, motion fitted on the training poses).
# Each training stage stops at its step count or its time limit, whichever comes first
# (VQ_MINUTES, TECO_MINUTES); re-running resumes or skips finished stages.
set -euo pipefail
cd "$(dirname "$0")/.."
WORLD=${WORLD:-dmlab64}
RUN=${RUN:-runs/$WORLD}
case "$WORLD" in
    dmlab64)
        GEN=(python -m data_gen.maze --preset dmlab); EPISODES=${EPISODES:-250}
        VQ_PRESET=tiny; VQ_STEPS=${VQ_STEPS:-1200}; VQ_MINUTES=${VQ_MINUTES:-15}
        TECO_STEPS=${TECO_STEPS:-800}; TECO_MINUTES=${TECO_MINUTES:-65}
        TECO_FLAGS=(--config.model.vq_vocab=1024 "--config.model.vq_grid=(16,16)" --config.model.z_ds=4) ;;
    voxel)
        GEN=(python -m data_gen.voxel --preset cpu); EPISODES=${EPISODES:-1000}
        VQ_PRESET=cpu; VQ_STEPS=${VQ_STEPS:-1200}; VQ_MINUTES=${VQ_MINUTES:-8}
        TECO_STEPS=${TECO_STEPS:-1500}; TECO_MINUTES=${TECO_MINUTES:-40}
        TECO_FLAGS=(--config.model.memory.detect_blocked=True) ;;
    *) echo "error: WORLD=$WORLD: choose dmlab64 or voxel" >&2; exit 2 ;;
esac
built() { ls "$1"/*/1.0.0/teco_meta.json >/dev/null 2>&1; }
step() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }
mkdir -p "$RUN"

step "data: $EPISODES episodes (seed 0) and 48 held-out ones (seed 777)"
built "$RUN/tfds" || { rm -rf "$RUN/tfds"; "${GEN[@]}" --episodes "$EPISODES" --out "$RUN/raw" --seed 0 --workers 2 \
    --preview "$RUN/contact_sheet.png" && python -m teco_jax.data.build --src "$RUN/raw" --out "$RUN/tfds"; }
built "$RUN/heldout_tfds" || { rm -rf "$RUN/heldout_tfds"; "${GEN[@]}" --episodes 48 --test_fraction 0.99 \
    --out "$RUN/heldout" --seed 777 && python -m teco_jax.data.build --src "$RUN/heldout" --out "$RUN/heldout_tfds"; }

step "VQ-GAN (configs/vqgan_dmlab.py:$VQ_PRESET, $VQ_STEPS steps or $VQ_MINUTES minutes)"
[ -f "$RUN/vqgan/DONE" ] || { python -m teco_jax.train --config "configs/vqgan_dmlab.py:$VQ_PRESET" \
    --workdir "$RUN/vqgan" --config.data.dir="$RUN/tfds" --config.train.num_steps="$VQ_STEPS" \
    --config.optim.decay_steps="$VQ_STEPS" --config.loss.disc_start=$(( VQ_STEPS * 7 / 8 )) \
    --config.train.eval_every="$VQ_STEPS" --config.train.max_minutes="$VQ_MINUTES" && touch "$RUN/vqgan/DONE"; }

step "codes"
built "$RUN/codes" || { rm -rf "$RUN/codes"; python -m teco_jax.encode --vqgan "$RUN/vqgan" --data "$RUN/tfds" \
    --out "$RUN/codes" --chunk 128; }

step "TECO (configs/teco_dmlab.py:smooth, $TECO_STEPS steps or $TECO_MINUTES minutes)"
[ -f "$RUN/teco/DONE" ] || { python -m teco_jax.train --config configs/teco_dmlab.py:smooth --workdir "$RUN/teco" \
    --config.data.dir="$RUN/codes" "${TECO_FLAGS[@]}" --config.train.num_steps="$TECO_STEPS" \
    --config.optim.decay_steps="$TECO_STEPS" --config.train.eval_every="$TECO_STEPS" \
    --config.train.max_minutes="$TECO_MINUTES" && touch "$RUN/teco/DONE"; }

step "held-out benchmark (cpu protocol: 64 context + 64 predicted frames; 48 videos in groups of 12)"
[ -f "$RUN/heldout_benchmark/results.json" ] || python -m eval.benchmark --checkpoint "$RUN/teco" \
    --data "$RUN/heldout_tfds" --out "$RUN/heldout_benchmark" --preset cpu --num_videos 48 --group_size 12 \
    --no_fvd  # I3D on 128-frame clips at 224x224 takes about 7 minutes per 8 videos on 2 CPU cores
python -m eval.report "$RUN/heldout_benchmark/results.json" "$RUN/heldout_benchmark/results.json" \
    --out "$RUN/heldout_benchmark/paired.md"
echo "report: $RUN/heldout_benchmark/report.md (paired differences: paired.md)"
