"""Sharded training on an 8-device CPU mesh gives the numbers of one device.

JAX fixes its device count when it initialises, and the rest of the suite imports it with
one CPU device, so everything that needs 8 devices runs in two subprocesses (one per model,
concurrently) started with XLA_FLAGS=--xla_force_host_platform_device_count=8:
`python -m tests.test_sharding {teco|vqgan} DIR`. Each writes its measurements to
DIR/results.json; the tests below only read them. Each scenario is recorded separately, so
one failure does not hide the others.

Scenarios (the tiny TECO and VQ-GAN of teco_jax/testing.py, float32, the Trainer's real jitted
step, batches from the real pipeline):
  equivalence   meshes (data, fsdp, model) = (8,1,1), (1,4,2) vs one device:
                loss and gradient norm of the first 3 steps
  shardings     mesh (1,4,2): the declared shardings of named parameters, the shardings of
                the created arrays, and Adam's mu/nu mirroring the parameters
  resharding    (TECO) a checkpoint written on (8,1,1) after 2 steps, restored onto (1,4,2):
                step 3's loss equals that of continuing on (8,1,1)
  memory        paper-size TECO (dry run, abstract shapes only): per-device parameter and
                optimizer bytes on (1,8,1) vs one device
  bfloat16      compute in bfloat16: finite loss close to float32, float32 params/opt state

These take minutes on a 2-core CPU and are marked slow (`-m slow`). One quick case runs in
the default tier: the tiny TECO on mesh (data, fsdp, model) = (2, 2, 2), data x FSDP x tensor
parallelism at once, against one device for 2 steps (`python -m tests.test_sharding quick DIR`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MESHES = {"8x1x1": (8, 1, 1), "1x4x2": (1, 4, 2)}  # pure data parallelism; FSDP x tensor parallelism
STEPS = 3
RTOL = 1e-5
# 8 CPU devices; the other two flags only make XLA compile 2-3x faster (these models are tiny,
# so running slower code costs nothing), for every mesh alike.
XLA_FLAGS = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
             "--xla_llvm_disable_expensive_passes=true")


# --------------------------------------------------------------------------- the worker
def _run_steps(tr, num_steps, state=None, data_iter=None, after_step=None):
    """Drive the Trainer's jitted step like Trainer.train does; returns per-step metrics."""
    import jax

    from teco_jax import parallel

    cfg = tr.config
    if data_iter is None:
        data_iter = iter(tr.dataset("train", batch_size=cfg.data.batch_size, seed=cfg.seed))
    state = tr.create_state() if state is None else state
    constants = tr.device_constants()
    rows = []
    for _ in range(num_steps):
        batch = parallel.global_batch(tr.task.prepare_batch(next(data_iter)), tr.mesh)
        step_fn = tr.step_fn(batch, constants)
        with jax.set_mesh(tr.mesh):
            state, metrics = step_fn(state, batch, constants)
        rows.append({k: float(v) for k, v in jax.device_get(metrics).items()})
        if after_step is not None:
            after_step(len(rows), state, data_iter)
    return rows, state, data_iter


def _spec(sharding):
    """A partition spec with trailing Nones dropped, as a list, for comparison."""
    parts = [p if p is None or isinstance(p, str) else list(p) for p in sharding.spec]
    while parts and parts[-1] is None:
        parts.pop()
    return parts


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _shardings_report(tr, state) -> dict:
    """Declared vs actual shardings of a few named parameters; Adam mu/nu vs params."""
    import jax

    declared = {_path_str(p): _spec(s) for p, s in jax.tree_util.tree_leaves_with_path(tr.state_shardings.params)}
    actual = {_path_str(p): _spec(a.sharding) for p, a in jax.tree_util.tree_leaves_with_path(state.params)}
    shapes = {_path_str(p): list(a.shape) for p, a in jax.tree_util.tree_leaves_with_path(state.params)}
    # Adam's moments: every leaf of mu and nu has the sharding of the parameter at the same path.
    import optax

    param_sh = jax.tree.leaves(tr.state_shardings.params)
    adam = [s for s in jax.tree.leaves(state.opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
    mirror = []
    for s in adam:
        for moment in (s.mu, s.nu):
            leaves = jax.tree.leaves(moment)
            mirror.append(len(leaves) == len(param_sh) and all(
                a.sharding.is_equivalent_to(sh, a.ndim) for a, sh in zip(leaves, param_sh)))
    return {"declared": declared, "actual": actual, "shapes": shapes, "adam_states": len(adam),
            "adam_mirrors_params": mirror}


def _memory(tmp: Path) -> dict:
    import jax

    from teco_jax import config_base, trainer

    base = config_base.load_sibling(str(ROOT / "configs" / "teco_dmlab.py"), "teco_dmlab").get_config("")
    out = {}
    for name, mesh, devices in (("one_device", (1, 1, 1), jax.devices()[:1]), ("1x8x1", (1, 8, 1), None)):
        cfg = trainer.config_replace(base, **{"model.vqgan_dir": "random", "mesh.shape": mesh})
        t0 = time.perf_counter()
        out[name] = trainer.Trainer(cfg, tmp / "unused", devices=devices).memory_report()
        out[name]["seconds"] = time.perf_counter() - t0
    return out


def quick_worker(tmp: Path) -> dict:
    """The tiny TECO's first 2 steps on mesh (2, 2, 2) and on one device, from the same state."""
    import jax

    from teco_jax import trainer
    from tests.helpers.configs import teco_mesh_config
    from tests.helpers.episodes import write_tiny_dataset

    assert jax.device_count() == 8, jax.devices()
    data_dir = write_tiny_dataset(tmp, "teco")
    one = trainer.Trainer(teco_mesh_config(data_dir, (1, 1, 1)), tmp / "unused", devices=jax.devices()[:1])
    state0 = one.create_state()  # a host copy (steps donate their input state); the PRNG key as raw data
    initial = jax.device_get(state0.replace(key=jax.random.key_data(state0.key)))
    mesh = trainer.Trainer(teco_mesh_config(data_dir, (2, 2, 2)), tmp / "mesh")
    out = {}
    for name, t in (("one_device", one), ("2x2x2", mesh)):
        state = jax.device_put(initial, t.state_shardings.replace(key=t.state_shardings.key))
        state = state.replace(key=jax.random.wrap_key_data(state.key))
        out[name] = [{k: r[k] for k in ("loss", "grad_norm")} for r in _run_steps(t, 2, state=state)[0]]
    return out


def worker(tmp: Path, model: str) -> dict:
    """The scenarios of one model ("teco" also does resharding, "vqgan" the memory check)."""
    import jax
    import jax.numpy as jnp

    from teco_jax import checkpoint, trainer
    from tests.helpers.configs import teco_mesh_config, vqgan_mesh_config
    from tests.helpers.episodes import write_tiny_dataset

    assert jax.device_count() == 8, jax.devices()
    results: dict = {"errors": {}, "seconds": {}}
    t_start = time.perf_counter()

    def scenario(name, fn):
        t0 = time.perf_counter()
        try:
            results[name] = fn()
        except Exception:  # recorded; the test for this scenario fails with the traceback
            results["errors"][name] = traceback.format_exc()
        results["seconds"][name] = round(time.perf_counter() - t0, 1)

    data_dir = write_tiny_dataset(tmp, model)
    make_config = {"teco": teco_mesh_config, "vqgan": vqgan_mesh_config}[model]
    trainers: dict = {}
    one = jax.devices()[:1]
    tr = trainer.Trainer(make_config(data_dir, (1, 1, 1)), tmp / "unused", devices=one)
    state0 = tr.create_state()
    # a host copy (steps donate their input state); the PRNG key as its raw data
    initial = jax.device_get(state0.replace(key=jax.random.key_data(state0.key)))
    del state0

    def fresh(tr):
        state = jax.device_put(initial, tr.state_shardings.replace(key=tr.state_shardings.key))
        return state.replace(key=jax.random.wrap_key_data(state.key))

    def equivalence():
        runs = {"one_device": _run_steps(tr, STEPS, state=fresh(tr))[0]}
        for name, mesh in MESHES.items():
            t = trainers[name] = trainer.Trainer(make_config(data_dir, mesh), tmp / f"{model}_{name}")
            after = None
            if name == "8x1x1":
                def after(n, state, it):  # checkpoint after step 2 (state and data iterator)
                    if n == 2:
                        ck = checkpoint.Checkpointer(tmp / "ckpt_8x1x1")
                        ck.save(2, state, it, force=True)
                        ck.wait()
                        ck.close()
            # (1, 4, 2) initialises its own sharded state (jitted init with out_shardings); the
            # others start from the one-device state (an init compile each saved)
            rows, state, _ = _run_steps(t, STEPS, state=None if name == "1x4x2" else fresh(t), after_step=after)
            runs[name] = rows
            if name == "1x4x2":
                results["shardings"] = _shardings_report(t, state)
        return {name: [{k: r[k] for k in ("loss", "grad_norm")} for r in rows] for name, rows in runs.items()}

    scenario("equivalence", equivalence)

    def resharding():
        t = trainers["1x4x2"]
        it = iter(t.dataset("train", batch_size=t.config.data.batch_size, seed=t.config.seed))
        ck = checkpoint.Checkpointer(tmp / "ckpt_8x1x1")
        with jax.set_mesh(t.mesh):
            state = ck.restore(t.abstract_state, it)
        ck.close()
        restored_ok = all(a.sharding.is_equivalent_to(s, a.ndim) for a, s in
                          zip(jax.tree.leaves(state), jax.tree.leaves(t.state_shardings)))
        rows, state, _ = _run_steps(t, 1, state=state, data_iter=it)
        return {"restored_step": 2, "step3_on_1x4x2": rows[0]["loss"], "restored_shardings_ok": restored_ok}

    if model == "teco":
        scenario("resharding", resharding)

    def bfloat16():
        t = trainer.Trainer(make_config(data_dir, (1, 1, 1), dtype="bfloat16"), tmp / "unused", devices=one)
        # the same initial parameters as the float32 run (bfloat16 changes compute, not params)
        rows, state, _ = _run_steps(t, 1, state=fresh(t))
        # the compiled step really computes in bfloat16: count bf16 convolutions / dot products
        from teco_jax import parallel

        batch = parallel.global_batch(t.task.prepare_batch(next(iter(t.dataset(
            "train", batch_size=t.config.data.batch_size, seed=0)))), t.mesh)
        constants = t.device_constants()
        with jax.set_mesh(t.mesh):
            hlo = t.step_fn(batch, constants).lower(state, batch, constants).as_text()
        ops = [line for line in hlo.splitlines() if "stablehlo.convolution" in line or "stablehlo.dot_general" in line]
        return {"loss": rows[0]["loss"], "grad_norm": rows[0]["grad_norm"],
                "matmuls": len(ops), "bf16_matmuls": sum("bf16" in line for line in ops),
                "param_dtypes": sorted({str(a.dtype) for a in jax.tree.leaves(state.params)}),
                "opt_dtypes": sorted({str(a.dtype) for a in jax.tree.leaves(state.opt_state)
                                      if jnp.issubdtype(a.dtype, jnp.floating)})}

    scenario("bfloat16", bfloat16)
    if model == "vqgan":
        scenario("memory", lambda: _memory(tmp))
    results["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    return results


# ------------------------------------------------------------------------------ the tests
def _subprocess_env() -> dict:
    return {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAGS}".strip(),
            "JAX_PLATFORMS": "cpu"}


def test_data_fsdp_tensor_mesh_matches_one_device_quick(tmp_path):
    """The default tier's sharding check: data x FSDP x tensor parallelism on 8 CPU devices gives
    one device's loss and gradient norm (2 steps of the tiny TECO, one subprocess)."""
    proc = subprocess.run([sys.executable, "-m", "tests.test_sharding", "quick", str(tmp_path)], cwd=ROOT,
                          env=_subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    runs = json.loads((tmp_path / "results.json").read_text())
    assert len(runs["one_device"]) == 2 and runs["one_device"][0]["loss"] != runs["one_device"][1]["loss"]
    for step, (got, want) in enumerate(zip(runs["2x2x2"], runs["one_device"])):
        for key in ("loss", "grad_norm"):
            assert _rel(got[key], want[key]) <= RTOL, (step, key, got[key], want[key])


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """Both workers' results, {"teco": {...}, "vqgan": {...}}. They run concurrently (XLA
    compiles on one thread, so two workers use both cores of a 2-core CI machine)."""
    tmp = tmp_path_factory.mktemp("sharding")
    env = _subprocess_env()
    procs = {m: subprocess.Popen([sys.executable, "-m", "tests.test_sharding", m, str(tmp / m)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for m in ("teco", "vqgan")}
    out, failed = {}, []
    for m, proc in procs.items():
        try:
            log, _ = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
        path = tmp / m / "results.json"
        if proc.returncode or not path.exists():
            failed.append(f"{m} worker failed (rc {proc.returncode}):\n{log[-6000:]}")
        else:
            out[m] = json.loads(path.read_text())
    if failed:
        pytest.fail("\n".join(failed))
    return out


def _check(results, model, name):
    res = results[model]
    if name in res["errors"]:
        pytest.fail(f"{model} scenario {name} failed in the worker:\n{res['errors'][name]}")
    return res[name]


def _rel(a, b):
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.slow  # the 8-device workers take minutes on a 2-core CPU
@pytest.mark.parametrize("model", ["teco", "vqgan"])
def test_meshes_match_one_device(results, model):
    runs = _check(results, model, "equivalence")
    ref = runs["one_device"]
    assert len(ref) == STEPS and len({r["loss"] for r in ref}) == STEPS  # the parameters do change
    for name in MESHES:
        for step, (got, want) in enumerate(zip(runs[name], ref)):
            for key in ("loss", "grad_norm"):
                assert _rel(got[key], want[key]) <= RTOL, (name, step, key, got[key], want[key])


@pytest.mark.slow  # the 8-device workers take minutes on a 2-core CPU
def test_parameter_shardings_follow_the_rules(results):
    rep = _check(results, "teco", "shardings")
    declared, actual, shapes = rep["declared"], rep["actual"], rep["shapes"]
    assert declared == actual  # the created arrays carry the declared shardings

    def one(name):
        [key] = [k for k in declared if k.startswith(name)]
        return declared[key], shapes[key]

    # mesh (1, 4, 2): embed -> fsdp, mlp/heads/conv_out -> model, conv_in -> fsdp, norm -> replicated
    assert one("temporal/transformer/blocks/0/mlp/fc1/kernel") == (["fsdp", "model"], [16, 32])
    assert one("temporal/transformer/blocks/0/mlp/fc2/kernel") == (["model", "fsdp"], [32, 16])
    assert one("temporal/transformer/blocks/0/attn/q_proj/kernel") == (["fsdp", "model"], [16, 16])
    assert one("temporal/transformer/blocks/0/attn/out_proj/kernel") == (["model", "fsdp"], [16, 16])
    assert one("temporal/transformer/blocks/0/norm1/scale") == ([], [16])
    assert one("encoder/block_in/conv1/kernel") == ([None, None, "fsdp", "model"], [3, 3, 8, 8])
    assert one("decoder/out/kernel") == (["fsdp", "model"], [8, 32])  # (embed, vocab)
    assert rep["adam_states"] == 1 and rep["adam_mirrors_params"] == [True, True]
    vq = _check(results, "vqgan", "shardings")
    assert vq["declared"] == vq["actual"] and vq["adam_states"] == 1 and vq["adam_mirrors_params"] == [True, True]
    convs = [k for k, s in vq["declared"].items() if len(s) == 4 and s[2:] == ["fsdp", "model"]]
    assert len(convs) > 5, "VQ-GAN conv kernels should be split over (fsdp, model)"


@pytest.mark.slow  # the 8-device workers take minutes on a 2-core CPU
def test_checkpoint_restores_onto_another_mesh(results):
    res = _check(results, "teco", "resharding")
    continued = _check(results, "teco", "equivalence")["8x1x1"][2]["loss"]
    assert res["restored_shardings_ok"]
    assert _rel(res["step3_on_1x4x2"], continued) <= RTOL, (res, continued)


@pytest.mark.slow  # the 8-device workers take minutes on a 2-core CPU
def test_dry_run_memory_is_split_over_fsdp(results):
    mem = _check(results, "vqgan", "memory")
    one, eight = mem["one_device"], mem["1x8x1"]
    assert one["params"] > 4 * 170e6  # ~173 M float32 parameters
    assert one["opt_state"] > 2 * one["params"] - 1024  # Adam: mu and nu
    for key in ("params", "opt_state"):
        ratio = eight[key] / one[key]
        assert 1 / 8 <= ratio <= 1 / 7, (key, ratio)


@pytest.mark.slow  # the 8-device workers take minutes on a 2-core CPU
@pytest.mark.parametrize("model", ["teco", "vqgan"])
def test_bfloat16_compute_keeps_float32_state(results, model):
    got = _check(results, model, "bfloat16")
    f32 = _check(results, model, "equivalence")["one_device"][0]  # the same parameters and batch
    assert got["param_dtypes"] == ["float32"] and got["opt_dtypes"] == ["float32"], got
    assert got["bf16_matmuls"] > got["matmuls"] / 2, got  # most convolutions and matmuls run in bfloat16
    assert got["loss"] == pytest.approx(f32["loss"], rel=0.02), (got, f32)
    assert got["grad_norm"] == pytest.approx(f32["grad_norm"], rel=0.1), (got, f32)


if __name__ == "__main__":  # python -m tests.test_sharding {teco|vqgan|quick} DIR  (sets XLA_FLAGS itself)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAGS}".strip()
    directory = Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    res = quick_worker(directory) if sys.argv[1] == "quick" else worker(directory, sys.argv[1])
    (directory / "results.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res if sys.argv[1] == "quick" else {"errors": list(res["errors"]), "seconds": res["seconds"]}))
