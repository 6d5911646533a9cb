"""Play inside a trained TECO from the browser: each key press generates one frame.

    python -m teco_jax.play --checkpoint checkpoints/maze_smooth [--data DATASET] [--port 8000]

Open the printed URL. Sessions start from the first --context frames of a test episode
of --data (a raw-frame dataset, `python -m teco_jax.data.build`). Without --data, the
episodes are rendered on the spot by a CPU maze world (`data_gen.maze --preset WORLD`,
--world: smooth, the world the demo checkpoint was trained on, or cpu, the grid world).
Keys: arrows/WASD move and turn, 1-9 pick an action by number, Space/0/N is "no action", Esc resets to the context.
The server listens on 127.0.0.1 only, unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from data_gen import maze
from teco_jax.errors import UserError


def maze_episodes(wm, count: int, seed: int, world: str = "smooth"):
    """`count` episodes of a CPU maze world (a maze preset), rendered now, with its action names."""
    from teco_jax.play.engine import Episode  # deferred: arguments are checked before the model stack loads

    config = maze.PRESETS[world]
    shape = (config.resolution, config.resolution, 3)
    if wm.frame_shape != shape or wm.num_actions != len(maze.ACTIONS):
        raise UserError(f"the model takes {wm.frame_shape} frames and {wm.num_actions} actions, not the CPU maze "
                        f"world's {shape} and {len(maze.ACTIONS)}: pass --data with a test set it was trained for")
    batch = maze.generate(np.arange(count) + 10**6 + seed, config)  # seeds far from the generator's defaults
    eps = [Episode(f"maze {world} #{i}", batch["video"][i], batch["actions"][i]) for i in range(count)]
    return eps, maze.ACTIONS


def dataset_episodes(wm, data: str, split: str, count: int):
    """The first `count` episodes of a raw-frame dataset's split, checked against the model."""
    from teco_jax.data import tfds_meta, tfds_read  # deferred: tensorflow_datasets takes seconds to import
    from teco_jax.play.engine import Episode  # deferred: arguments are checked before the model stack loads

    meta, source = tfds_read.load_frame_split(data, split)
    if tuple(meta.frame_shape) != tuple(wm.frame_shape):
        raise UserError(f"{data} has {tuple(meta.frame_shape)} frames, but the model takes {wm.frame_shape}")
    tfds_meta.check_actions(meta, wm.num_actions, "the model's num_actions", data_dir=data)
    eps = []
    for i in range(min(count, len(source))):
        ex = source[i]
        name = ex.get("episode_id", f"{split} #{i}")
        name = name.decode() if isinstance(name, bytes) else str(name)
        eps.append(Episode(name, np.asarray(ex["video"]), np.asarray(ex["actions"], np.int32)))
    return eps, tuple(meta.action_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m teco_jax.play", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a TECO workdir or bundle (e.g. checkpoints/maze_smooth)")
    parser.add_argument("--data", help="a raw-frame dataset to take the context episodes from")
    parser.add_argument("--world", choices=("smooth", "cpu"), default="smooth",
                        help="without --data: the maze preset whose episodes are rendered (smooth motion or the grid)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--episodes", type=int, default=16, help="how many episodes to offer")
    parser.add_argument("--context", type=int, default=16, help="real frames each session starts from")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.context < 1:
        parser.error("--episodes and --context must be >= 1")

    from teco_jax.play.engine import Engine, Session  # deferred: arguments are checked before the model stack loads
    from teco_jax.play.server import PlayApp, serve
    from teco_jax.world_model import WorldModel

    try:
        if not Path(args.checkpoint).exists():
            raise UserError(f"--checkpoint {args.checkpoint}: no such directory")
        try:
            wm = WorldModel.load(args.checkpoint)
        except (FileNotFoundError, ValueError) as e:
            raise UserError(f"--checkpoint {args.checkpoint}: {e}") from e
        if args.data:
            episodes, names = dataset_episodes(wm, args.data, args.split, args.episodes)
        else:
            episodes, names = maze_episodes(wm, args.episodes, args.seed, args.world)
        engine = Engine(wm, names, context=args.context, seed=args.seed)
        app = PlayApp(engine, episodes, seed=args.seed)
        t0 = time.perf_counter()
        Session(engine, episodes[0], "warmup").step(engine.null_action)  # compile before the first visitor
        server = serve(app, args.host, args.port)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    print(f"teco_jax play: http://{host}:{port}/  ({len(episodes)} episodes, {args.context} context frames, "
          f"ready in {time.perf_counter() - t0:.1f} s; Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
