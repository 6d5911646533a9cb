"""Inference on every device: on 8 simulated CPU devices, WorldModel encodes, rolls out and decodes
with the batch split over the devices, and gets what one device gets.

JAX fixes its device count when it starts, so the 8-device run is a subprocess
(`python -m tests.test_world_model_devices OUT`) that writes its measurements to OUT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
         "--xla_llvm_disable_expensive_passes=true")


def worker(out: Path) -> None:
    import jax
    import numpy as np

    from data_gen import maze
    from teco_jax.rollout import Sampler
    from teco_jax.world_model import WorldModel, inference_mesh

    demo = ROOT / "checkpoints" / "maze_smooth"
    wm8 = WorldModel.load(demo)  # the default mesh: every device
    wm1 = WorldModel.load(demo, mesh=inference_mesh(jax.devices()[:1]))
    eps = maze.generate(np.arange(8) + 10**6, maze.PRESETS["smooth"])
    frames, actions = eps["video"][:, :20], eps["actions"][:, :20]
    greedy = Sampler(schedule="confidence", confidence_steps=4, temperature=0.0, choice_temperature=0.0)
    codes8, codes1 = wm8.encode(frames), wm1.encode(frames)
    on_devices = wm8.rollout_codes_on_devices(codes8[:, :12], actions, 20, jax.random.key(0), greedy)
    roll8, roll1 = np.asarray(on_devices), wm1.rollout_codes(codes1[:, :12], actions, 20, 0, greedy)
    video8, video1 = wm8.decode(roll8), wm1.decode(roll1)
    report = {
        "devices": jax.device_count(),
        "mesh_devices": int(wm8.mesh.devices.size),
        "rollout_shard_rows": sorted({int(s.data.shape[0]) for s in on_devices.addressable_shards}),
        "rollout_devices": len(on_devices.sharding.device_set),
        "param_devices": len(jax.tree.leaves(wm8.teco)[0].sharding.device_set),
        "encode_equal": bool(np.array_equal(codes8, codes1)),
        "rollout_equal_fraction": float(np.mean(roll8 == roll1)),
        "decode_max_abs_diff": int(np.max(np.abs(video8.astype(int) - video1.astype(int)))),
    }
    out.write_text(json.dumps(report))


def test_eight_devices_split_the_batch_and_match_one_device(tmp_path):
    env = {**os.environ, "XLA_FLAGS": FLAGS, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    out = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "tests.test_world_model_devices", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["devices"] == r["mesh_devices"] == r["rollout_devices"] == r["param_devices"] == 8
    assert r["rollout_shard_rows"] == [1]  # 8 videos over 8 devices: each holds one
    assert r["encode_equal"]
    assert r["rollout_equal_fraction"] == 1.0
    assert r["decode_max_abs_diff"] <= 1  # uint8 rounding of float sums split differently


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
