#!/usr/bin/env bash
# The quickstart: every stage is a visible call of a real command-line tool, skipped when
# its output already exists, so an interrupted run resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/quickstart}
EPISODES=${EPISODES:-40}
mkdir -p "$RUN"

stage() { echo; echo "=== [$(date +%H:%M:%S)] $*"; }

stage "1/2 generate $EPISODES DMLab-style maze episodes -> $RUN/maze"
python -m data_gen.maze --episodes "$EPISODES" --out "$RUN/maze" --seed 0 --workers 2 \
    --preview "$RUN/maze_contact_sheet.png"

stage "2/2 convert to a TFDS array_record dataset -> $RUN/maze_tfds"
if ls "$RUN"/maze_tfds/*/1.0.0/teco_meta.json >/dev/null 2>&1; then
    echo "already built, skipping"
else
    rm -rf "$RUN/maze_tfds"
    python -m teco_jax.data.build --src "$RUN/maze" --out "$RUN/maze_tfds"
fi

echo
echo "done: contact sheet at $RUN/maze_contact_sheet.png, dataset at $RUN/maze_tfds"
