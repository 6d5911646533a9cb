"""eval.report: differences paired by group, only between runs on the same videos."""

import copy

import pytest

from eval import report


def results(teco_psnr, copy_psnr, num_videos=12, data="data/x"):
    def stats(groups):
        return {"mean": sum(groups) / len(groups), "std": 0.0, "groups": list(groups)}

    ac = {"teco": {k: stats(teco_psnr) for k in report.METRICS},
          "copy_last": {k: stats(copy_psnr) for k in report.METRICS}}
    return {"data": data, "split": "test", "action_conditioned": ac,
            "protocol": {"context": 4, "predict": 4, "num_videos": num_videos, "group_size": 4,
                         "num_groups": num_videos // 4}}


def test_paired_diff_is_the_mean_and_standard_error_of_group_differences():
    d = report.paired_diff([2.0, 4.0, 9.0], [1.0, 2.0, 6.0])  # differences 1, 2, 3
    assert d["mean"] == pytest.approx(2.0) and d["std"] == pytest.approx(1.0 / 3 ** 0.5)
    assert report.paired_diff([5.0], [1.0]) == {"mean": 4.0, "std": None}
    # groups without frames of a kind (None) drop out of the pairing
    assert report.paired_diff([2.0, None, 9.0, 1.0], [1.0, 3.0, 6.0, None]) == {"mean": 2.0, "std": 1.0}
    assert report.paired_diff([None], [1.0]) == {"mean": None, "std": None}
    with pytest.raises(ValueError):
        report.paired_diff([1.0, 2.0], [1.0])


def test_paired_table_only_for_runs_on_the_same_videos():
    a = results([10.0, 11.0, 12.0], [10.0, 10.5, 11.0])
    b = results([11.0, 12.5, 12.5], [10.0, 10.5, 11.0])
    md = report.paired_table([a, b], ["a", "b"])
    # b - a per group: 1.0, 1.5, 0.5 -> 1.00 ± 0.29; a - copy: 0, 0.5, 1 -> 0.50 ± 0.29
    assert "| b | TECO − TECO of a | 1.00 ± 0.29 |" in md
    assert "| a | TECO − copy last context frame | 0.50 ± 0.29 |" in md
    other = copy.deepcopy(b)
    other["protocol"]["num_videos"] = 16
    assert report.paired_table([a, other], ["a", "b"]) is None
    assert report.paired_table([a, results([1.0] * 3, [1.0] * 3, data="data/y")], ["a", "y"]) is None
    assert report.paired_table([a], ["a"]) is None


def test_paired_table_compares_memory_frames_with_the_short_window():
    a = results([10.0, 11.0, 12.0], [10.0, 10.5, 11.0])
    memory = {"teco": [12.0, None, 11.0], "teco_short": [10.0, 9.0, 10.0]}  # group 2 has no memory frames
    a["revisit"] = {"available": True, "short_window": 16, "methods": {
        m: {k: {"memory": {"groups": g}} for k in report.METRICS} for m, g in memory.items()}}
    a["protocol"]["short_window"] = 16
    md = report.paired_table([a, copy.deepcopy(a)], ["a", "b"])
    assert "| a | memory frames: TECO − TECO, last 16 frames | 1.50 ± 0.50 |" in md
