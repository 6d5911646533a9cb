"""Play mode's latency on this machine: key press to new frame, with the demo checkpoint.

    python bench/play_latency.py [--checkpoint checkpoints/maze_smooth] [--steps 200]

Prints the median and 90th percentile of
  engine   one frame: TECO's cached step + MaskGIT + decoder + VQ-GAN decode (Session.step)
  http     POST /api/step through the real server: the engine plus PNG, base64, JSON and HTTP
for frames inside the trained window and past it (where the KV cache slides), and the
time to start a session (encode + prefill the context). The target is <= 100 ms (http).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _post(base, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "maze_smooth"))
    parser.add_argument("--steps", type=int, default=200, help="frames per measurement (> window - context)")
    parser.add_argument("--context", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from teco_jax.play.__main__ import maze_episodes
    from teco_jax.play.engine import Engine, Session
    from teco_jax.play.server import PlayApp, serve
    from teco_jax.world_model import WorldModel

    wm = WorldModel.load(args.checkpoint)
    episodes, names = maze_episodes(wm, 2, seed=0)
    engine = Engine(wm, names, context=args.context)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, wm.num_actions, args.steps).tolist()
    Session(engine, episodes[0], "warmup").step(0)  # compile

    t0 = time.perf_counter()
    session = Session(engine, episodes[0], "engine")
    start_ms = 1000 * (time.perf_counter() - t0)
    engine_ms = []
    for a in actions:
        t = time.perf_counter()
        session.step(a)
        engine_ms.append(1000 * (time.perf_counter() - t))

    server = serve(PlayApp(engine, episodes), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sid = _post(base, "/api/session", {"episode": 0})["session"]
    http_ms = []
    for a in actions:
        t = time.perf_counter()
        _post(base, "/api/step", {"session": sid, "action": a})
        http_ms.append(1000 * (time.perf_counter() - t))
    server.shutdown()

    inside = wm.window - args.context  # frames generated before the window is full
    print(f"checkpoint {args.checkpoint}: window {wm.window} frames, context {args.context}, "
          f"{args.steps} frames per run; session start {start_ms:.0f} ms")
    print(f"{'':8s} {'inside the window':>24s} {'past the window':>24s}")
    for name, ms in (("engine", engine_ms), ("http", http_ms)):
        a, b = np.asarray(ms[:inside]), np.asarray(ms[inside:])
        cell = lambda x: f"{np.median(x):6.1f} ms (p90 {np.percentile(x, 90):5.1f})" if len(x) else "-"  # noqa: E731
        print(f"{name:8s} {cell(a):>24s} {cell(b):>24s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
