"""Does a trained TECO retrieve? Teacher-forced accuracy on frames that repeat an earlier frame.

    python bench/teco_retrieval.py runs/grid_a [--episodes 16] [--data CODES]

On the test clips of the workdir's code dataset, each frame t >= n_cond is put in one of
three groups by its codes: "repeat, far" (equal to a frame of the clip more than 16 frames
earlier, and to none closer), "repeat, near" (equal to one of the 16 frames before it), and
"new" (equal to no earlier frame). For each group it prints the teacher-forced accuracy of
argmax D(0, h_t), what the rollouts show (`eval/h_only_acc` of training's evaluation). A
transformer that finds the earlier view in its window scores near 1 on the repeats; one
that does not scores about the same on all three groups. In the cell-move CPU world
(`data_gen.maze --preset cpu`) most frames are repeats (docs/cpu_world.md, "Cell moves").

Some frames are easier than others whatever the context, so it then runs a control: the
clip's first half (frames and actions) is replaced by the first half of another test clip,
and frames of the second half (from 16 frames after the swap on) are scored twice, with the
true first half and with the swapped one. A frame that repeats a view seen only in the first
half loses its earlier occurrence; if the model copies it, its accuracy drops much more than
that of the new frames (which lose only the episode's colours and layout).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from teco_jax.data import tfds_read
from teco_jax.loading import load_model
from teco_jax.tasks import base as tasks

from retrieval_from_codes import NEAR, control_masks, repeat_groups  # bench/, the script's own folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", help="a TECO training workdir")
    p.add_argument("--episodes", type=int, default=16, help="test clips to score")
    p.add_argument("--data", default=None, help="a code dataset of the same VQ-GAN (default: the workdir's)")
    args = p.parse_args()
    if args.episodes < 1:
        p.error(f"--episodes must be at least 1, got {args.episodes}")

    model, config = load_model(args.workdir)
    task = tasks.get(config.task)(config)
    constants = jax.tree.map(jnp.asarray, task.constants())
    _, splits = tfds_read.load(args.data or config.data.dir)
    source = splits["test"]

    @jax.jit
    def h_only(codes_BTHW, actions_BT):
        out = task.forward(model, codes_BTHW, actions_BT, jax.random.key(0), constants, drop_rate=0.0, train=False)
        return model.h_only_codes(out["h"], out["memory"]), out["codes"], out["idx"]

    groups: dict[str, list[float]] = {"repeat, far": [], f"repeat, within {NEAR}": [], "new": []}
    count = min(args.episodes, len(source))
    true_runs = []  # (pred, truth, idx) per clip, reused by the control
    for i in range(count):
        ex = source[i]
        codes = np.asarray(ex["codes"], np.int32)[None]
        pred, truth, idx = (np.asarray(x) for x in h_only(jnp.asarray(codes), jnp.asarray(ex["actions"], jnp.int32)[None]))
        true_runs.append((pred, truth, idx))
        group = repeat_groups(codes.reshape(codes.shape[:2] + (-1,)))[0]  # 0 new, 1 within NEAR, 2 older
        for k, t in enumerate(idx.reshape(-1)):
            key = ("new", f"repeat, within {NEAR}", "repeat, far")[group[t]]
            groups[key].append(float(np.mean(pred[0, k] == truth[0, k])))
    print(f"{args.workdir}: teacher-forced accuracy of argmax D(0, h_t), {count} test clips")
    for key, accs in groups.items():
        print(f"  {key:18s} {len(accs):6d} frames   accuracy {np.mean(accs) if accs else float('nan'):.3f}")

    # The control: the first half swapped for another clip's.
    control: dict[str, list[tuple[float, float]]] = {"seen only in the first half": [], "new": []}
    for i in range(count):
        ex, other = source[i], source[(i + 1) % len(source)]
        codes = np.asarray(ex["codes"], np.int32)
        actions = np.asarray(ex["actions"], np.int32)
        half = codes.shape[0] // 2
        swapped = codes.copy()
        swapped[:half] = np.asarray(other["codes"], np.int32)[:half]
        swapped_actions = actions.copy()
        swapped_actions[:half] = np.asarray(other["actions"], np.int32)[:half]
        pred, truth, idx = true_runs[i]
        pred_sw, truth_sw, idx_sw = (np.asarray(x) for x in h_only(jnp.asarray(swapped[None]), jnp.asarray(swapped_actions[None])))
        assert np.array_equal(idx, idx_sw)
        recall, unseen = (m[0] for m in control_masks(codes.reshape(1, codes.shape[0], -1)))
        for k, t in enumerate(idx.reshape(-1)):
            key = "seen only in the first half" if recall[t] else ("new" if unseen[t] else None)
            if key:
                control[key].append((float(np.mean(pred[0, k] == truth[0, k])), float(np.mean(pred_sw[0, k] == truth_sw[0, k]))))
    print(f"control: frames >= {NEAR} after the middle, scored with the true first half / another clip's")
    for key, pairs in control.items():
        a = np.asarray(pairs).reshape(-1, 2)
        print(f"  {key:28s} {len(a):5d} frames   accuracy {a[:, 0].mean():.3f} -> {a[:, 1].mean():.3f}   "
              f"drop {a[:, 0].mean() - a[:, 1].mean():+.3f}")


if __name__ == "__main__":
    main()
