"""The training loop, written once for every task.

    state = init (jit with out_shardings: parameters are born sharded)  or  restore
    loop: batch -> global arrays -> train_step (jit, donated state) -> log / images /
          checkpoint / eval;  SIGTERM, Ctrl-C or train.max_minutes -> checkpoint and exit cleanly,
          at the same step on every process (teco_jax/stopping.py)

The train state is a pytree: step, parameters (an nnx State), other model variables,
optimizer state and the base RNG key. Step s uses fold_in(key, s), so a resumed run
draws exactly the randomness an uninterrupted run would.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from teco_jax import checkpoint, loading, optim, parallel
from teco_jax import logging as tlog
from teco_jax import workdir as wd
from teco_jax.data import pipeline
from teco_jax.stopping import Stopper, any_process
from teco_jax.tasks import base as tasks


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any  # nnx.State of nnx.Param
    rest: Any  # nnx.State of any other model variables (may be empty)
    opt_state: Any
    key: jax.Array


def _bytes_per_device(tree: Any, shardings: Any) -> int:
    """Bytes one device holds of `tree` (abstract arrays) under `shardings`."""
    total = 0
    for leaf, sh in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        shard = sh.shard_shape(leaf.shape) if leaf.shape else ()
        total += int(np.prod(shard)) * jnp.dtype(leaf.dtype).itemsize
    return total


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


class Trainer:
    """Builds the task, the mesh, the sharded state and the jitted step from one config."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: Path | str,
                 devices: list[jax.Device] | None = None):
        """`devices`: the devices of the mesh (default: all devices of all processes)."""
        self.config = wd.absolute_paths(config)
        self.workdir = Path(workdir)
        self.task = tasks.get(config.task)(self.config)
        # Config values worked out from the data (TECO's fitted motion) before the model is built:
        # a resumed run takes its stored ones, so a refused resume reads no data.
        resumable = checkpoint.has_checkpoint(self.workdir) and (self.workdir / wd.CONFIG_FILE).exists()
        stored = checkpoint.load_config(self.workdir) if resumable else None
        self.task.resolve(stored)
        self.mesh = parallel.make_mesh(config.mesh.shape, devices=devices)
        self.rules = parallel.rules_from_config(config.get("sharding_rules"))
        self.tx = optim.make(config.optim)
        self.lr_schedule = optim.schedule(config.optim)
        self.stop_reason = ""

        task, tx = self.task, self.tx

        def init_state(key: jax.Array) -> TrainState:
            model = task.build_model(nnx.Rngs(key))
            _, params, rest = nnx.split(model, nnx.Param, ...)
            return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest,
                              opt_state=tx.init(params), key=key)

        self._init_state = init_state
        abstract_model = nnx.eval_shape(lambda: task.build_model(nnx.Rngs(0)))
        self.graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
        self.abstract_model = abstract_model
        abstract = jax.eval_shape(init_state, jax.random.key(0))
        rep = parallel.replicated(self.mesh)
        param_sh = parallel.state_shardings(abstract.params, self.mesh, self.rules)
        rest_sh = parallel.state_shardings(abstract.rest, self.mesh, self.rules)
        opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract.opt_state, param_sh,
                                       transform_non_params=lambda _: rep)
        self.state_shardings = TrainState(step=rep, params=param_sh, rest=rest_sh, opt_state=opt_sh, key=rep)
        self.abstract_state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                           abstract, self.state_shardings)
        self.init = jax.jit(init_state, out_shardings=self.state_shardings)
        self._step_fns: dict = {}

    # ----------------------------------------------------------------- state
    def model(self, state: TrainState) -> nnx.Module:
        return nnx.merge(self.graphdef, state.params, state.rest)

    def create_state(self) -> TrainState:
        with jax.set_mesh(self.mesh):
            return self.init(jax.random.key(self.config.seed))

    def _start_from(self, state: TrainState, source: str) -> TrainState:
        """`state` with the parameters of `source` (train.init_from); the optimizer starts fresh."""
        params = jax.tree.map(lambda a: a, self.abstract_state.params)  # a copy to fill
        nnx.replace_by_pure_dict(params, loading.initial_params(source, self.config))

        def place(x, a):  # every process holds the whole array and hands each local device its shard
            host = np.asarray(x, a.dtype)
            return jax.make_array_from_callback(a.shape, a.sharding, lambda index: host[index])

        params = jax.tree.map(place, params, self.abstract_state.params)
        if jax.process_index() == 0:
            print(f"parameters from {source} (train.init_from); a fresh optimizer state")
        return state.replace(params=params)

    def memory_report(self) -> dict[str, int]:
        """Per-device bytes of parameters and optimizer state under the configured mesh."""
        a, s = self.abstract_state, self.state_shardings
        return {"params": _bytes_per_device(a.params, s.params),
                "opt_state": _bytes_per_device(a.opt_state, s.opt_state)}

    # ------------------------------------------------------------------ step
    def _train_step(self, state: TrainState, batch: dict, constants: Any):
        task, tx, graphdef = self.task, self.tx, self.graphdef
        key = jax.random.fold_in(state.key, state.step)

        def loss_fn(params):
            model = nnx.merge(graphdef, params, state.rest)
            return task.loss(model, batch, key, state.step, constants)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.tree.norm(grads),
                   "lr": self.lr_schedule(state.step)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    def step_fn(self, batch: dict, constants: Any):
        """The jitted train step for batches shaped like `batch` (compiled once per layout)."""
        key = tuple(sorted((k, v.ndim) for k, v in batch.items()))
        if key not in self._step_fns:
            batch_sh = {k: parallel.batch_sharding(self.mesh, v.ndim) for k, v in batch.items()}
            const_sh = jax.tree.map(lambda _: parallel.replicated(self.mesh), constants)
            self._step_fns[key] = jax.jit(
                self._train_step, in_shardings=(self.state_shardings, batch_sh, const_sh),
                out_shardings=(self.state_shardings, parallel.replicated(self.mesh)), donate_argnums=(0,))
        return self._step_fns[key]

    def device_constants(self) -> Any:
        constants = self.task.constants()
        return jax.device_put(constants, parallel.replicated(self.mesh)) if constants is not None else None

    # ------------------------------------------------------------------ data
    def dataset(self, split: str, *, batch_size: int, seed: int, shuffle: bool = True,
                num_epochs: int | None = None, random_offset: bool = True):
        cfg = self.config.data
        if not cfg.dir:
            raise ValueError("config.data.dir is empty: point it at a TFDS dataset directory "
                             "(--config.data.dir=...)")
        count = jax.process_count()
        if batch_size % count:
            raise ValueError(f"batch size {batch_size} does not divide over {count} processes")
        ds, _ = pipeline.make_dataset(cfg.dir, split, seq_len=cfg.seq_len, batch_size=batch_size // count,
                                      seed=seed, shuffle=shuffle, random_offset=random_offset,
                                      num_epochs=num_epochs, process_index=jax.process_index(),
                                      process_count=count, read_threads=cfg.read_threads, prefetch=cfg.prefetch,
                                      drop_remainder=True)
        return ds

    def _check_batch_size(self) -> None:
        dp = parallel.data_parallel_size(self.mesh)
        if self.config.data.batch_size % dp:
            raise ValueError(f"config.data.batch_size={self.config.data.batch_size} does not divide over the "
                             f"{dp} data-parallel devices of mesh {dict(self.mesh.shape)}")

    # ------------------------------------------------------------------ loop
    def _lock(self) -> wd.Lock | None:
        """Process 0 locks the workdir; every process learns whether it could (no process hangs)."""
        lock, error = None, None
        if jax.process_index() == 0:
            lock = wd.Lock(self.workdir)
            try:
                lock.acquire()
            except wd.WorkdirError as e:
                lock, error = None, e
        if not any_process(error is not None)[0]:
            return lock
        raise error or wd.WorkdirError(f"{self.workdir}: process 0 could not lock the workdir (see its log)")

    def train(self, num_steps: int | None = None) -> TrainState:
        """Train to `num_steps` (default train.num_steps), resuming from the workdir's latest checkpoint.

        Before anything is written or compiled: the config is checked against the stored one
        (teco_jax/workdir.py), the data and the task's expectations of it are checked. A start
        that fails before its first checkpoint removes the workdir it created.
        `self.stop_reason` says how it ended: "done", "max_minutes" or "signal"."""
        cfg = self.config
        self._check_batch_size()
        resuming = checkpoint.has_checkpoint(self.workdir)
        changes = wd.check_resume(self.workdir, cfg) if resuming else {}
        self.task.preflight(tasks.data_meta(cfg))
        constants = self.device_constants()  # e.g. loads TECO's VQ-GAN: errors here come before compiling
        created = not self.workdir.exists() or not any(self.workdir.iterdir())
        lock = self._lock()
        failed = True
        try:
            state = self._train(num_steps, constants, changes)
            failed = False
            return state
        finally:
            if lock is not None:
                lock.release()
            if failed and created and jax.process_index() == 0 and not checkpoint.has_checkpoint(self.workdir):
                shutil.rmtree(self.workdir, ignore_errors=True)  # a failed start leaves no debris

    def _train(self, num_steps: int | None, constants: Any, changes: dict) -> TrainState:
        cfg, tcfg = self.config, self.config.train
        num_steps = tcfg.num_steps if num_steps is None else num_steps
        lead = jax.process_index() == 0
        data_iter = iter(self.dataset("train", batch_size=cfg.data.batch_size, seed=cfg.seed))
        ckpt = checkpoint.Checkpointer(self.workdir, keep=tcfg.keep_ckpts)
        try:
            state = self._restore_or_create(ckpt, data_iter)
        except BaseException:
            ckpt.close()
            raise
        if lead:  # only now, with the checkpoint known to fit: the config and its history
            wd.record_config(self.workdir, cfg, int(state.step), changes)
        writer = tlog.MetricWriter(self.workdir)
        start = int(state.step)
        self.stop_reason = "done"
        stopper = Stopper(tcfg.get("max_minutes", 0))
        bar = tqdm(total=num_steps, initial=start, desc=f"train {cfg.task}", disable=not lead,
                   dynamic_ncols=True, unit="step")
        step_fn, t_last, steps_since = None, time.perf_counter(), 0
        try:
            with stopper:  # SIGTERM / Ctrl-C: save and stop after the step in flight
                try:
                    for step in range(start, num_steps):
                        batch = parallel.global_batch(self.task.prepare_batch(next(data_iter)), self.mesh)
                        if step_fn is None:
                            step_fn = self.step_fn(batch, constants)
                            if lead:
                                self._print_memory(step_fn, state, batch, constants)
                        with jax.set_mesh(self.mesh):
                            state, metrics = step_fn(state, batch, constants)
                        steps_since += 1
                        bar.update(1)
                        done = step + 1
                        if done % tcfg.log_every == 0 or done == num_steps:
                            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
                            now = time.perf_counter()
                            metrics["steps_per_s"] = steps_since / (now - t_last)
                            t_last, steps_since = now, 0
                            writer.scalars(done, metrics, "train/")
                            bar.set_postfix(loss=f"{metrics['loss']:.4f}", refresh=False)
                        if tcfg.image_every and (done % tcfg.image_every == 0 or done == num_steps):
                            self._visualize(state, batch, constants, writer, done)
                        if tcfg.eval_every and done % tcfg.eval_every == 0 and done != num_steps:
                            self._evaluate(state, constants, writer, done)
                        stop = stopper.should_stop()  # the same on every process: all save the same step
                        self.stop_reason = stop or "done"
                        if stop == "max_minutes":
                            if lead:
                                tqdm.write(f"train.max_minutes={tcfg.max_minutes} reached at step {done}")
                            self._evaluate(state, constants, writer, done)
                        if done % tcfg.ckpt_every == 0 or done == num_steps or stop:
                            ckpt.save(done, state, data_iter, force=True)
                        if stop:
                            ckpt.wait()
                            if lead:
                                what = "interrupted" if stopper.interrupted else "stopped"
                                tqdm.write(f"{what} at step {done}; checkpoint saved; rerun the same command to resume")
                            break
                    else:
                        if num_steps > start:
                            self._evaluate(state, constants, writer, num_steps)
                except KeyboardInterrupt:  # a second Ctrl-C, or one outside the loop: save what we have, if we can
                    self._save_interrupted(ckpt, state, data_iter)
                    raise
        finally:
            bar.close()
            ckpt.wait()
            ckpt.close()
            writer.close()
        if stopper.interrupted:
            raise KeyboardInterrupt  # the caller (teco_jax.train: exit code 130, no traceback) stops too
        return state

    def _restore_or_create(self, ckpt: checkpoint.Checkpointer, data_iter) -> TrainState:
        """The latest checkpoint's state (and data position), else a new state (train.init_from's parameters)."""
        if ckpt.latest_step() is not None:
            with jax.set_mesh(self.mesh):
                state = ckpt.restore(self.abstract_state, data_iter)
            if jax.process_index() == 0:
                print(f"resumed from {ckpt.directory}/{ckpt.latest_step()} (step {int(state.step)})")
            return state
        state = self.create_state()
        if self.config.train.get("init_from"):
            state = self._start_from(state, self.config.train.init_from)
        return state

    def _save_interrupted(self, ckpt: checkpoint.Checkpointer, state: TrainState, data_iter) -> None:
        """Save `state` unless it is saved already, and say so; a failed save keeps the last complete checkpoint."""
        done = int(state.step)
        try:
            ckpt.wait()
            if ckpt.latest_step() != done:
                ckpt.save(done, state, data_iter, force=True)
                ckpt.wait()
            saved = f"checkpoint {done} saved"
        except Exception as e:  # noqa: BLE001 - checkpoints are atomic: the last complete one stays
            saved = f"could not save step {done} ({e}); the last complete checkpoint is {ckpt.latest_step()}"
        if jax.process_index() == 0:
            tqdm.write(f"interrupted at step {done}; {saved}; rerun the same command to resume")

    def _print_memory(self, step_fn, state, batch, constants) -> None:
        mem = self.memory_report()
        print(f"mesh {dict(self.mesh.shape)}; per device: params {_fmt_bytes(mem['params'])}, "
              f"optimizer state {_fmt_bytes(mem['opt_state'])}")
        try:
            with jax.set_mesh(self.mesh):
                analysis = step_fn.lower(state, batch, constants).compile().memory_analysis()
        except Exception as e:  # memory analysis is not available on every backend
            print(f"compiled step memory analysis unavailable: {e}")
            return
        if analysis is not None:
            fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                      "generated_code_size_in_bytes")
            print("compiled train step, per device: " + ", ".join(
                f"{f.replace('_size_in_bytes', '')} {_fmt_bytes(getattr(analysis, f, 0))}" for f in fields))

    def _visualize(self, state, batch, constants, writer, step) -> None:
        """Every process draws the same picture from the whole batch; process 0 writes it."""
        image = self.task.visualize(self.model(state), batch, constants)
        if image is not None:
            writer.image(step, "samples", image)

    def evaluate(self, state: TrainState, constants: Any = None) -> dict[str, float]:
        tcfg = self.config.train
        # A fixed sample: clips at seeded random offsets, repeating the split if it is small.
        # Each process reads its part of every batch; the task sees global arrays (all of the data).
        ds = self.dataset("test", batch_size=tcfg.eval_batch_size, seed=0)
        batches = (parallel.global_batch(b, self.mesh) for _, b in zip(range(tcfg.eval_batches), ds))
        constants = self.device_constants() if constants is None else constants
        return self.task.evaluate(self.model(state), batches, constants)

    def _evaluate(self, state, constants, writer, step) -> None:
        metrics = self.evaluate(state, constants)
        if metrics:
            writer.scalars(step, metrics, "eval/")
            if jax.process_index() == 0:
                tqdm.write(f"eval @ {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


def restore_model(workdir: Path | str, step: int | None = None) -> tuple[nnx.Module, ml_collections.ConfigDict]:
    """Rebuild a trained model from its workdir alone (config.json + the latest checkpoint).
    Parameters only: see teco_jax/loading.py."""
    return loading.load_model(workdir, step)


def config_replace(config: ml_collections.ConfigDict, **updates) -> ml_collections.ConfigDict:
    """A copy of a (locked) config with dotted-key updates, e.g. config_replace(c, **{"train.num_steps": 3})."""
    new = ml_collections.ConfigDict(config.to_dict())
    for key, value in updates.items():
        node = new
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        if leaf not in node:
            raise KeyError(f"unknown config key {key!r}")
        node[leaf] = value
    new.lock()
    return new

