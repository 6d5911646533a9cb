#!/usr/bin/env bash
# The smooth-world demo (checkpoints/maze_smooth) and its report, on a 2-core CPU (about an hour).
#
#   the quickstart on the smooth world (WORLD=smooth: data, VQ-GAN, codes, TECO 1,000 steps, report)
#   -> TECO resumed to 2,000 steps (a new cosine schedule over 2,000 steps) -> its report
#   -> held-out report (48 episodes of seed 777, never used in training) -> the bundle
#
# Re-running resumes or skips finished stages. Everything lands in $RUN (runs/smooth_demo).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/smooth_demo}
STEPS=${STEPS:-2000}
WORLD=smooth RUN="$RUN" bash scripts/quickstart.sh

echo; echo "=== [$(date +%H:%M:%S)] TECO resumed to $STEPS steps -> $RUN/teco"
if [ ! -d "$RUN/teco/checkpoints/$STEPS" ]; then
    python -m teco_jax.train --config configs/teco_dmlab.py:smooth --workdir "$RUN/teco" \
        --config.data.dir="$RUN/maze_codes" --config.train.num_steps="$STEPS" \
        --config.optim.decay_steps="$STEPS" --config.train.eval_every=1000
fi

echo; echo "=== [$(date +%H:%M:%S)] held-out episodes (seed 777) -> $RUN/heldout_tfds"
if ! ls "$RUN"/heldout_tfds/*/1.0.0/teco_meta.json >/dev/null 2>&1; then
    rm -rf "$RUN/heldout" "$RUN/heldout_tfds"
    python -m data_gen.maze --preset smooth --episodes 48 --test_fraction 0.99 --out "$RUN/heldout" --seed 777
    python -m teco_jax.data.build --src "$RUN/heldout" --out "$RUN/heldout_tfds"
fi

echo; echo "=== [$(date +%H:%M:%S)] benchmarks of the $STEPS-step TECO"
for name in benchmark_$STEPS:maze_tfds:16:4 heldout_benchmark:heldout_tfds:48:12; do
    IFS=: read -r out data videos group <<< "$name"
    if [ ! -f "$RUN/$out/results.json" ]; then
        python -m eval.benchmark --checkpoint "$RUN/teco" --data "$RUN/$data" --out "$RUN/$out" \
            --num_videos "$videos" --group_size "$group" --no_fvd
    fi
    python -m eval.report "$RUN/$out/results.json" "$RUN/$out/results.json" --out "$RUN/$out/paired.md"
done

echo; echo "=== [$(date +%H:%M:%S)] bundle -> $RUN/bundle"
[ -d "$RUN/bundle" ] || python -m teco_jax.bundle --teco "$RUN/teco" --out "$RUN/bundle"
echo "reports: $RUN/benchmark_$STEPS/report.md  $RUN/heldout_benchmark/report.md (paired differences: paired.md)"
