"""Does a trained TECO retrieve? Teacher-forced accuracy on frames that repeat an earlier frame.

    python bench/teco_retrieval.py runs/grid_a [--episodes 16]

On the test clips of the workdir's code dataset, each frame t >= n_cond is put in one of
three groups by its codes: "repeat, far" (equal to a frame of the clip more than 16 frames
earlier, and to none closer), "repeat, near" (equal to one of the 16 frames before it), and
"new" (equal to no earlier frame). For each group it prints the teacher-forced accuracy of
argmax D(0, h_t), what the rollouts show (`eval/h_only_acc` of training's evaluation). A
transformer that finds the earlier view in its window scores near 1 on the repeats; one
that does not scores about the same on all three groups. In the cell-move CPU world
(`data_gen.maze --preset cpu`) most frames are repeats (docs/cpu_world.md, "Cell moves").
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from teco_jax.data import tfds_io
from teco_jax.loading import load_model
from teco_jax.tasks import base as tasks

NEAR = 16  # the benchmark's short window


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", help="a TECO training workdir")
    p.add_argument("--episodes", type=int, default=16, help="test clips to score")
    args = p.parse_args()

    model, config = load_model(args.workdir)
    task = tasks.get(config.task)(config)
    constants = jax.tree.map(jnp.asarray, task.constants())
    _, splits = tfds_io.load(config.data.dir)
    source = splits["test"]

    @jax.jit
    def h_only(codes_BTHW, actions_BT):
        out = task.forward(model, codes_BTHW, actions_BT, jax.random.key(0), constants, drop_rate=0.0, train=False)
        return model.h_only_codes(out["h"]), out["codes"], out["idx"]

    groups: dict[str, list[float]] = {"repeat, far": [], f"repeat, within {NEAR}": [], "new": []}
    count = min(args.episodes, len(source))
    for i in range(count):
        ex = source[i]
        codes = np.asarray(ex["codes"], np.int32)[None]
        pred, truth, idx = (np.asarray(x) for x in h_only(jnp.asarray(codes), jnp.asarray(ex["actions"], jnp.int32)[None]))
        frames = codes[0].reshape(codes.shape[1], -1)
        for k, t in enumerate(idx.reshape(-1)):
            earlier = np.flatnonzero((frames[:t] == frames[t]).all(axis=1))
            key = "new" if not len(earlier) else (f"repeat, within {NEAR}" if t - earlier.max() <= NEAR else "repeat, far")
            groups[key].append(float(np.mean(pred[0, k] == truth[0, k])))
    print(f"{args.workdir}: teacher-forced accuracy of argmax D(0, h_t), {count} test clips")
    for key, accs in groups.items():
        print(f"  {key:18s} {len(accs):6d} frames   accuracy {np.mean(accs) if accs else float('nan'):.3f}")


if __name__ == "__main__":
    main()
