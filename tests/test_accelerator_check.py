"""scripts/accelerator_check.py: its CPU smoke test (--cpu_small) end to end, in this process,
and its peak table and OOM handling without an accelerator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("accelerator_check", ROOT / "scripts" / "accelerator_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_small(check, tmp_path, capsys):
    out = tmp_path / "results.json"
    assert check.main(["--cpu_small", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())

    assert results["platform"] == "cpu" and results["dtype"] == "float32"
    assert results["peak_flops"] is None
    assert "no dense bf16 peak known for device kind 'cpu'" in results["mfu_note"]
    assert "MFU: n/a: no dense bf16 peak known for device kind 'cpu'" in printed
    assert "compiled.cost_analysis()['flops']" in printed and results["flops_source"] == check.FLOPS_SOURCE

    rows = results["train_step"]
    assert [r["batch"] for r in rows] == [1] and not any(r["oom"] for r in rows)
    for r in rows:
        assert r["ms_per_step"] > 0 and len(r["steps_s"]) == 2
        assert r["tokens_per_step"] == r["batch"] * 8 * 16 * 16  # batch x seq_len x the code grid
        assert r["tokens_per_s"] > 0 and r["flops_per_step"] > 0 and r["flops_per_s"] > 0
        assert r["mfu"] is None and r["peak_memory_bytes"] is None  # the CPU keeps no memory statistics
        assert r["xla_temp_bytes"] > 0
    assert check.HEADER in printed and check.format_row(rows[0]) in printed

    r = results["rollout"]
    assert (r["frames"], r["context"], r["generated_frames"], r["window"]) == (24, 4, 20, 8)
    assert r["frames_per_s"] > 0 and r["seconds"] > 0
    assert f"{r['frames_per_s']:.2f} frames/s" in printed


def test_peak_table(check):
    assert check.peak_bf16("NVIDIA H100 80GB HBM3") == (989e12, "H100 SXM")
    assert check.peak_bf16("NVIDIA H100 PCIe") == (756e12, "H100 PCIe")
    assert check.peak_bf16("NVIDIA H200") == (989e12, "H200 SXM")
    assert check.peak_bf16("NVIDIA A100-SXM4-80GB") == (312e12, "A100")
    assert check.peak_bf16("TPU v4") == (275e12, "TPU v4")
    assert check.peak_bf16("TPU v5 lite") == (197e12, "TPU v5e")
    assert check.peak_bf16("TPU v5") == (459e12, "TPU v5p")
    peak, why = check.peak_bf16("Tesla T4")
    assert peak is None and "'Tesla T4'" in why and "--peak_flops" in why


def test_stops_at_the_first_oom(check, monkeypatch, capsys):
    tried = []

    def fake_step(tr, batch, steps, peak):
        tried.append(batch)
        if batch >= 4:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 99.00GiB.")
        return {"batch": batch, "oom": False, "compile_s": 1.0, "steps_s": [0.1], "ms_per_step": 100.0,
                "tokens_per_step": 1, "tokens_per_s": 10.0, "flops_per_step": 1e12, "flops_per_s": 1e13,
                "mfu": 0.01, "xla_temp_bytes": 2**30, "peak_memory_bytes": 2**31}

    monkeypatch.setattr(check, "train_step", fake_step)
    rows = check.train_steps(None, [8, 1, 4, 2], steps=1, peak=1e15)
    assert tried == [1, 2, 4] and [r["oom"] for r in rows] == [False, False, True]
    assert rows[-1]["error"].startswith("RESOURCE_EXHAUSTED")
    printed = capsys.readouterr().out
    assert "    4 OOM: RESOURCE_EXHAUSTED" in printed and "1.0%" in printed and "2.00 G" in printed

    def broken_step(tr, batch, steps, peak):
        raise ValueError("not a memory error")

    monkeypatch.setattr(check, "train_step", broken_step)
    with pytest.raises(ValueError, match="not a memory error"):
        check.train_steps(None, [1], steps=1, peak=None)
