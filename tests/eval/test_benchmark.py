"""The benchmark CLI end to end on a tiny untrained TECO (and a tiny untrained latent diffusion
baseline), its copy-last baseline against numbers computed here, the group statistics, and the
report merging two runs."""

import json
import math

import numpy as np
import pytest

from eval import benchmark, protocol, report, stats
from eval.methods import copy_last_frame
from teco_jax import encode, trainer
from teco_jax.data import tfds_write
from tests.helpers.configs import diffusion_tiny_config, teco_tiny_config, vqgan_tiny_config
from tests.helpers.runs import nine_action_frames, save_untrained

CONTEXT, PREDICT = 8, 4           # more context than the tiny TECO's window of 6 frames
UNCOND_CONTEXT, UNCOND_PREDICT = 3, 9
LENGTH = 12
NUM_VIDEOS, GROUP = 4, 2
# predicted frames 8..11 of every episode: 8 and 10 revisit context places, 9 and 11 are new
REVISITED = np.array([True, False, True, False])
# with the short window of 3 (context frames 5..7, cell x = 2), only frame 8 revisits a place that
# only the earlier context showed
MEMORY = np.array([True, False, False, False])


def _episode(rng):
    pose = np.zeros((LENGTH, 3), np.float32)
    pose[:CONTEXT, 0] = [0.1, 0.5, 1.2, 1.4, 1.6, 2.1, 2.5, 2.9]  # context: cells x = 0, 1, 2, heading 0
    pose[CONTEXT:, :2] = [(0.5, 0.5), (7.5, 7.5), (2.5, 0.2), (1.5, 0.5)]
    pose[CONTEXT + 3, 2] = math.pi / 2  # a seen cell, but looking the other way: new
    return {"video": rng.integers(0, 256, (LENGTH, 32, 32, 3), dtype=np.uint8),
            "actions": rng.integers(0, 6, (LENGTH,), dtype=np.int32), "pose": pose}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Dataset of 32x32 frames, an untrained VQ-GAN, TECO (window 6) trained on its codes and a latent
    diffusion baseline (window 4, conditioned on 2 frames) on its latents."""
    tmp = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    episodes = {}
    for split, n in (("train", 2), ("test", NUM_VIDEOS + 1)):
        (tmp / "src" / split).mkdir(parents=True)
        episodes[split] = [_episode(rng) for _ in range(n)]
        for i, ep in enumerate(episodes[split]):
            np.savez(tmp / "src" / split / f"ep_{i:04d}.npz", **ep)
    tfds_write.build_from_episodes(tmp / "src", tmp / "frames", name="frames32", num_actions=6)
    save_untrained(vqgan_tiny_config(tmp / "frames"), tmp / "vqgan")
    encode.encode_dataset(tmp / "vqgan", tmp / "frames", tmp / "codes")
    teco = teco_tiny_config(vqgan_dir="", action_dropout=0.5, vq_vocab=16, vq_embed_dim=8, vq_grid=(16, 16))
    save_untrained(trainer.config_replace(teco, **{"data.dir": str(tmp / "codes")}), tmp / "teco")
    diffusion = diffusion_tiny_config(tmp / "frames", frames=4, vqgan_dir=str(tmp / "vqgan"), latent_dim=8,
                                      latent_grid=(16, 16), latent_mean=(0.0,) * 8, latent_std=(1.0,) * 8)
    save_untrained(diffusion, tmp / "diffusion")
    return tmp, episodes["test"][:NUM_VIDEOS]


def _argv(tmp, out, *extra):
    return ["--checkpoint", str(tmp / "teco"), "--data", str(tmp / "frames"), "--out", str(out),
            "--num_videos", str(NUM_VIDEOS), "--group_size", str(GROUP), "--batch_size", "3",
            "--context", str(CONTEXT), "--predict", str(PREDICT), "--uncond_context", str(UNCOND_CONTEXT),
            "--uncond_predict", str(UNCOND_PREDICT), "--short_window", "3", "--num_grids", "1", *extra]


def _fake_i3d(videos, batch_size=8):
    """Cheap stand-in for I3D features (the real network takes minutes on a CPU)."""
    v = np.asarray(videos, np.float32) / 255.0
    return np.stack([v.mean(axis=(1, 2, 3, 4)), v.std(axis=(1, 2, 3, 4)), v[:, ::2].mean(axis=(1, 2, 3, 4)),
                     v[..., 0].mean(axis=(1, 2, 3))], axis=1)


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):
    """Two benchmark runs: --no_fvd, and --fvd (with the fake I3D) under another seed with --diffusion."""
    tmp, _ = setup
    out = tmp_path_factory.mktemp("out")
    assert benchmark.main(_argv(tmp, out / "a", "--no_fvd")) == 0
    with pytest.MonkeyPatch.context() as mp:
        import eval.fvd

        mp.setattr(eval.fvd, "i3d_features", _fake_i3d)
        assert benchmark.main(_argv(tmp, out / "b", "--fvd", "--seed", "1", "--diffusion", str(tmp / "diffusion"),
                                    "--schedule", "confidence", "--temperature", "0.5")) == 0
    return out / "a", out / "b"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork")  # imageio starts ffmpeg by fork + exec
def test_cli_writes_results_report_plots_and_videos(runs, capsys):
    a, b = runs
    files = {p.name for p in a.iterdir()}
    assert {"results.json", "report.md", "horizon_psnr.png", "horizon_ssim.png", "horizon_lpips.png",
            "revisit.png"} <= files
    assert {f"{kind}_0.{ext}" for kind in ("teco", "teco_short", "uncond") for ext in ("mp4", "gif")} <= files
    r = json.loads((a / "results.json").read_text())
    for key in ("date", "checkpoint", "step", "data", "device", "protocol", "config", "notes", "action_conditioned",
                "curves", "revisit", "unconditional", "speed", "wall_time_s"):
        assert key in r, key
    p = r["protocol"]
    assert (p["context"], p["predict"], p["model_window"], p["model_context"]) == (CONTEXT, PREDICT, 6, 6)
    cfg_sampling = r["config"]["model"]["sampling"]
    assert (p["sampler"]["schedule"], p["sampler"]["temperature"]) == (cfg_sampling["schedule"],
                                                                        cfg_sampling["temperature"])
    pb = json.loads((b / "results.json").read_text())["protocol"]["sampler"]
    assert (pb["schedule"], pb["temperature"]) == ("confidence", 0.5)  # --schedule / --temperature
    assert p["context_truncated"] and p["num_groups"] == 2 and p["preset"] == "cpu"  # 32x32 frames
    assert any("only the last 6 context frames" in n for n in r["notes"])
    for method in ("teco", "teco_short", "copy_last"):
        for metric in ("psnr", "ssim", "lpips"):
            stat = r["action_conditioned"][method][metric]
            assert len(stat["groups"]) == 2 and np.isfinite(stat["mean"]) and np.isfinite(stat["std"])
            assert len(r["curves"][method][metric]["mean"]) == PREDICT
    assert r["curves"]["frame_index"] == list(range(CONTEXT, CONTEXT + PREDICT))
    assert r["unconditional"]["fvd"] is None
    for name, window in (("teco", 6), ("teco_short", 3), ("uncond", 6)):
        s = r["speed"][name]
        assert s["window"] == window and s["frames_per_s"] > 0
    assert r["speed"]["teco"]["generated_frames"] == 6 * PREDICT  # two batches of 3 (one padded)
    assert r["speed"]["uncond"]["generated_frames"] == 6 * UNCOND_PREDICT

    md = (a / "report.md").read_text()
    assert "| method | PSNR ↑ | SSIM ↑ | LPIPS ↓ |" in md
    assert "| TECO (last 6 context frames) |" in md and "| copy last context frame |" in md
    assert "PSNR ↑ revisited | PSNR ↑ memory | PSNR ↑ new" in md and "frames/s" in md
    assert "only the last 6 context frames" in md and "not computed (--no_fvd)" in md
    assert "Only 4 of the revisited frames look at a place that the last 6 context frames" in md

    rb = json.loads((b / "results.json").read_text())
    assert np.isfinite(rb["unconditional"]["fvd"]) and rb["unconditional"]["clip_frames"] == 12
    per_group = rb["unconditional"]["fvd_groups"]["teco"]  # FVD per group of 2, mean ± std over the 2 groups
    assert len(per_group["groups"]) == 2 and rb["unconditional"]["fvd"] == pytest.approx(np.mean(per_group["groups"]))
    assert np.isfinite(per_group["all_videos"]) and per_group["std"] == pytest.approx(np.std(per_group["groups"]))
    assert "mean ± std over groups" in (b / "report.md").read_text()
    assert any("FVD per group of 2 videos is only indicative" in n for n in rb["notes"])
    assert rb["action_conditioned"]["teco"] != r["action_conditioned"]["teco"]  # another seed
    assert rb["action_conditioned"]["copy_last"] == r["action_conditioned"]["copy_last"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork")
def test_cli_with_the_diffusion_baseline(runs):
    a, b = runs
    r = json.loads((b / "results.json").read_text())
    assert r["methods"] == ["teco", "diffusion", "teco_short", "copy_last"]
    for metric in ("psnr", "ssim", "lpips"):
        stat = r["action_conditioned"]["diffusion"][metric]
        assert len(stat["groups"]) == 2 and np.isfinite(stat["mean"])
        assert len(r["curves"]["diffusion"][metric]["mean"]) == PREDICT
        assert r["revisit"]["methods"]["diffusion"][metric]["new"]["frames"] == NUM_VIDEOS * 2
    d = r["diffusion"]
    assert (d["window"], d["context_frames"], d["uncond_context_frames"], d["step"]) == (4, 2, 2, 1)
    assert any("given only the last 2 of the 8 context frames" in n for n in r["notes"])
    s = r["speed"]
    assert s["diffusion"]["window"] == 4 and s["diffusion"]["frames_per_s"] > 0
    assert s["diffusion"]["generated_frames"] == 6 * PREDICT and s["diffusion"]["compile_s"] >= 0
    assert s["diffusion_uncond"]["generated_frames"] == 6 * UNCOND_PREDICT
    assert d["speed_ratio"] == pytest.approx(s["teco"]["frames_per_s"] / s["diffusion"]["frames_per_s"])
    fvd = r["unconditional"]["fvd_per_method"]
    assert fvd["teco"] == r["unconditional"]["fvd"] and np.isfinite(fvd["diffusion"])
    assert {f"{kind}_0.mp4" for kind in ("diffusion", "diffusion_uncond")} <= {p.name for p in b.iterdir()}

    md = (b / "report.md").read_text()
    assert "| latent diffusion (last 2 context frames) |" in md  # the metric and revisit tables
    assert md.count("| latent diffusion (last 2 context frames) |") == 2
    assert "| latent diffusion (action-conditioned) | 4 |" in md and "| latent diffusion (unconditional) | 4 |" in md
    assert f"TECO : diffusion = {d['speed_ratio']:.2f} : 1" in md
    assert "latent diffusion **" in md
    assert "diffusion" not in json.loads((a / "results.json").read_text())  # only with --diffusion
    assert "TECO : diffusion" not in (a / "report.md").read_text()


@pytest.mark.slow
def test_copy_last_baseline_against_independent_numbers(setup, runs):
    skm = pytest.importorskip("skimage.metrics")
    _, episodes = setup
    r = json.loads((runs[0] / "results.json").read_text())
    real = np.stack([ep["video"] for ep in episodes]).astype(np.float64) / 255.0
    target, last = real[:, CONTEXT:CONTEXT + PREDICT], real[:, CONTEXT - 1]
    psnr = 10 * np.log10(1.0 / ((target - last[:, None]) ** 2).mean(axis=(2, 3, 4)))  # (N, PREDICT)
    ssim = np.array([[skm.structural_similarity(f, prev, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                                data_range=1.0, channel_axis=-1) for f in vid]
                     for vid, prev in zip(target, last)])
    for name, per_frame, tol in (("psnr", psnr, 1e-3), ("ssim", ssim, 1e-4)):
        got = r["action_conditioned"]["copy_last"][name]
        groups = per_frame.mean(axis=1).reshape(-1, GROUP).mean(axis=1)
        np.testing.assert_allclose(got["groups"], groups, atol=tol)
        np.testing.assert_allclose([got["mean"], got["std"]], [groups.mean(), groups.std()], atol=tol)
        np.testing.assert_allclose(r["curves"]["copy_last"][name]["mean"], per_frame.mean(axis=0), atol=tol)
        rv = r["revisit"]["methods"]["copy_last"][name]
        for side, sel in (("revisited", REVISITED), ("new", ~REVISITED), ("memory", MEMORY)):
            pooled = per_frame[:, sel].reshape(-1, GROUP * sel.sum()).mean(axis=1)
            np.testing.assert_allclose(rv[side]["groups"], pooled, atol=tol)
            assert rv[side]["frames"] == NUM_VIDEOS * sel.sum()
    assert r["revisit"]["fraction"] == 0.5 and r["revisit"]["memory_frames"] == NUM_VIDEOS
    # the model sees context frames 2..7 only (cells 1 and 2): frame 8's cell 0 is out of its reach
    assert r["revisit"]["model_context"] == 6 and r["revisit"]["revisited_in_model_context"] == NUM_VIDEOS


@pytest.mark.slow
def test_report_merges_two_runs(runs, tmp_path, capsys):
    a, b = runs
    out = tmp_path / "merged.md"
    assert report.main([str(a / "results.json"), str(b / "results.json"), "--out", str(out)]) == 0
    md = out.read_text()
    assert "| run | method | PSNR ↑ | SSIM ↑ | LPIPS ↓ |" in md
    assert "| teco@1 | copy last context frame |" in md and "| teco@1 (2) | copy last context frame |" in md
    assert md.count("| teco@1") >= 7 + 2 and "FVD ↓" in md and "## Protocols" in md
    assert "| teco@1 (2) | latent diffusion (last 2 context frames) |" in md and "TECO : diffusion" in md
    assert report.main([str(a / "report.md")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_group_and_masked_stats():
    v = np.array([1.0, 3.0, 5.0, 7.0])
    s = stats.group_stats(v, 2)
    assert s == {"mean": 4.0, "std": 2.0, "groups": [2.0, 6.0]}
    per_frame = np.arange(8.0).reshape(4, 2)  # videos x frames
    mask = np.array([[True, False], [False, False], [True, True], [False, True]])
    m = stats.masked_stats(per_frame, mask, 2)
    assert m["groups"] == pytest.approx([0.0, 16 / 3]) and m["frames"] == 4  # (4 + 5 + 7) / 3
    assert m["mean"] == pytest.approx(8 / 3) and m["std"] == pytest.approx(8 / 3)
    m = stats.masked_stats(per_frame, mask & (per_frame < 4), 2)
    assert m["groups"] == [0.0, None] and m["mean"] == 0.0 and m["std"] is None
    assert stats.group_stats(v, 4) == {"mean": 4.0, "std": None, "groups": [4.0]}
    assert report.pm({"mean": 1.0, "std": None}, "psnr") == "1.00 (1 group)"
    assert report.pm({"mean": None, "std": None}, "ssim") == "–"
    c = stats.curve_stats(per_frame, 2)
    assert c["mean"] == [3.0, 4.0] and c["std"] == [2.0, 2.0]
    frames = np.arange(2 * 3 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 3, 2, 2, 3)
    copied = copy_last_frame(frames, 4)
    assert copied.shape == (2, 4, 2, 2, 3) and (copied == frames[:, 2:3]).all()


@pytest.mark.slow
def test_cli_errors(setup, tmp_path, capsys, monkeypatch):
    from teco_jax.world_model import WorldModel

    tmp, _ = setup
    loaded = WorldModel.load(tmp / "teco")
    monkeypatch.setattr(WorldModel, "load", classmethod(lambda cls, *a, **kw: loaded))  # one load serves every case
    argv = _argv(tmp, tmp_path / "x", "--no_fvd")
    with pytest.raises(SystemExit):
        benchmark.main(argv + ["--group_size", "3"])
    assert "not a multiple of --group_size 3" in capsys.readouterr().err
    assert benchmark.main(argv + ["--predict", "40"]) == 1
    assert "episodes of 48 frames" in capsys.readouterr().err
    assert benchmark.main(argv + ["--short_window", "9"]) == 1
    assert "--short_window must lie in [2, --context=8]" in capsys.readouterr().err
    assert benchmark.main(argv + ["--num_videos", "8"]) == 1
    assert "has 5 episodes, fewer than the 8 videos" in capsys.readouterr().err
    i = argv.index("--num_videos")
    assert argv[i:i + 4] == ["--num_videos", "4", "--group_size", "2"]
    assert benchmark.main(argv[:i] + argv[i + 4:] + ["--protocol", "paper"]) == 1
    assert "has 5 episodes, fewer than the 1024 videos the protocol needs" in capsys.readouterr().err
    assert benchmark.main(argv[:-1] + ["--fvd", "--uncond_predict", "4"]) == 1
    assert "FVD needs clips of at least 9 frames" in capsys.readouterr().err
    assert benchmark.main(argv + ["--data", str(tmp / "codes")]) == 1
    assert "not a code dataset" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_report_and_plots_without_poses(runs, tmp_path):
    from eval import plots

    r = json.loads((runs[0] / "results.json").read_text())
    r["revisit"] = {"available": False, "note": "the dataset has no poses"}
    md = report.render(r)
    assert "Skipped: the dataset has no poses." in md and "PSNR ↑ revisited" not in md
    assert plots.write_all(r, tmp_path) == ["horizon_psnr.png", "horizon_ssim.png", "horizon_lpips.png"]
    assert "| – | – |" in report.merge([r, r])


def test_fvd_on_one_video_is_refused_before_any_work(tmp_path, capsys):
    """Nothing exists at --checkpoint or --data: the flags alone are refused, before loading anything."""
    out = tmp_path / "out"
    argv = ["--checkpoint", str(tmp_path / "teco"), "--data", str(tmp_path / "frames"), "--out", str(out)]
    for extra, groups in ((["--num_videos", "1"], 64), (["--num_videos", "4", "--group_size", "1", "--fvd"], 1)):
        assert benchmark.main(argv + extra) == 1
        err = capsys.readouterr().err
        assert err == (f"error: --num_videos {extra[1]} in groups of {groups} is too few for FVD: it fits a Gaussian "
                       "(mean and covariance) to the I3D features of each group's videos, which needs at least 2 "
                       "(256 for a reliable value); pass --num_videos and --group_size of 2 or more, or --no_fvd\n")
    assert not out.exists()
    assert benchmark.parse_args(argv + ["--num_videos", "1", "--group_size", "1", "--no_fvd"]).num_videos == 1


def test_video_protocols():
    """paper is 1,024 videos in groups of 256 and cannot be changed; small is the default and can."""
    argv = ["--checkpoint", "x", "--data", "y", "--out", "z"]
    a = benchmark.parse_args(argv)
    assert (a.protocol, a.num_videos, a.group_size) == ("small", 256, 64)
    a = benchmark.parse_args(argv + ["--protocol", "paper"])
    assert (a.num_videos, a.group_size) == (1024, 256)
    assert benchmark.parse_args(argv + ["--num_videos", "32", "--group_size", "8"]).num_videos == 32
    with pytest.raises(Exception, match="--protocol paper is 1024 videos in groups of 256"):
        protocol.resolve_videos("paper", 256, None)


def test_test_set_names_the_count_it_lacks(tmp_path):
    from eval.test_set import TestSet

    rng = np.random.default_rng(0)
    (tmp_path / "src" / "test").mkdir(parents=True)
    for i in range(3):
        np.savez(tmp_path / "src" / "test" / f"ep_{i}.npz", video=rng.integers(0, 256, (12, 8, 8, 3), dtype=np.uint8),
                 actions=np.zeros(12, np.int32))
    tfds_write.build_from_episodes(tmp_path / "src", tmp_path / "frames", name="tiny", num_actions=2)
    assert TestSet(tmp_path / "frames", "test", 3, 12).actions.shape == (3, 12)
    with pytest.raises(ValueError, match="tiny/test has 3 episodes, fewer than the 1024 videos"):
        TestSet(tmp_path / "frames", "test", 1024, 12)


def test_fvd_per_group_against_frechet_distance():
    from eval.fvd import frechet_distance

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(8, 3)), rng.normal(1.0, 1.0, size=(8, 3))
    s = stats.fvd_group_stats(real, fake, 4)
    groups = [frechet_distance(real[:4], fake[:4]), frechet_distance(real[4:], fake[4:])]
    assert s["groups"] == pytest.approx(groups) and s["mean"] == pytest.approx(np.mean(groups))
    assert s["std"] == pytest.approx(np.std(groups)) and s["all_videos"] == pytest.approx(frechet_distance(real, fake))
    assert stats.fvd_group_stats(real, fake, 8)["std"] is None


def test_cli_refuses_a_dataset_with_another_action_set(tmp_path, capsys):
    """Checked from the checkpoints' configs, before any model is loaded (there is no checkpoint here)."""
    from teco_jax import checkpoint

    data = nine_action_frames(tmp_path)
    checkpoint.save_config(tmp_path / "teco", teco_tiny_config())
    checkpoint.save_config(tmp_path / "diffusion", diffusion_tiny_config(data, num_actions=9, use_actions=True))
    capsys.readouterr()  # TFDS's progress bars
    out = tmp_path / "out"
    argv = ["--checkpoint", str(tmp_path / "teco"), "--data", str(data), "--out", str(out), "--num_videos", "2",
            "--group_size", "2"]
    assert benchmark.main(argv) == 1
    assert capsys.readouterr().err == (
        f"error: {data}: the dataset has 9 actions (a, b, c, d, e, f, g, h, i), but model.num_actions of "
        f"{tmp_path / 'teco'} is 6: the model and its data must share one action set\n")
    checkpoint.save_config(tmp_path / "teco", teco_tiny_config(num_actions=9))
    checkpoint.save_config(tmp_path / "diffusion", diffusion_tiny_config(data, num_actions=6))
    assert benchmark.main(argv + ["--diffusion", str(tmp_path / "diffusion")]) == 1
    assert f"but model.num_actions of {tmp_path / 'diffusion'} is 6" in capsys.readouterr().err
    assert not out.exists()
