"""Training-curve plots: metrics.jsonl parsing (resumes overwrite a step), smoothing, errors."""

import json

import numpy as np
import pytest

from teco_jax import plot_metrics


def _write(workdir, rows):
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_series_keeps_the_last_row_per_step(tmp_path):
    _write(tmp_path / "run", [{"step": 1, "train/loss": 3.0}, {"step": 2, "train/loss": 2.0},
                              {"step": 2, "train/loss": 1.5}, {"step": 2, "eval/psnr": 20.0}])
    steps, values = plot_metrics.series(plot_metrics.read_metrics(tmp_path / "run"), "train/loss")
    np.testing.assert_array_equal(steps, [1, 2])
    np.testing.assert_array_equal(values, [3.0, 1.5])


def test_running_mean():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(plot_metrics.running_mean(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(plot_metrics.running_mean(x, 1), x)


def test_plot_writes_png(tmp_path):
    _write(tmp_path / "run", [{"step": s, "train/loss": 1.0 / s, "eval/psnr": 20.0 + s} for s in range(1, 20)])
    out = tmp_path / "curve.png"
    assert plot_metrics.main([str(tmp_path / "run"), "--keys", "train/loss", "eval/psnr", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_metrics.read_metrics(tmp_path / "missing")
    _write(tmp_path / "bad", [{"step": 1}])
    (tmp_path / "bad" / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        plot_metrics.read_metrics(tmp_path / "bad")
