"""Markdown reports of benchmark results (`eval.benchmark`'s results.json).

    python -m eval.report runs/bench_a/results.json runs/bench_b/results.json --out report.md

One file: the same report the benchmark writes (`render`). Several files: one table of
every checkpoint's methods, then revisit, FVD/speed and protocol tables (`merge`); runs
with different protocols are flagged, since their numbers do not compare. Runs on the
same test videos also get differences paired by group (mean ± standard error): the
videos' own difficulty cancels, which ranks checkpoints that a std over groups cannot.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

METRICS = ("psnr", "ssim", "lpips")
HEADERS = {"psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}
DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fvd": 1}
PROTOCOL_KEYS = ("context", "predict", "uncond_context", "uncond_predict", "short_window", "num_videos",
                 "group_size")
#: What makes two runs score the same frames of the same videos in the same groups.
PAIRED_KEYS = ("context", "predict", "num_videos", "group_size")


def method_name(method: str, results: dict) -> str:
    """How a method is called in the tables."""
    p = results["protocol"]
    names = {"teco": "TECO" + (f" (last {p['model_context']} context frames)" if p.get("context_truncated") else ""),
             "teco_short": f"TECO, last {p['short_window']} frames",
             "copy_last": "copy last context frame"}
    if "diffusion" in results:
        names["diffusion"] = f"latent diffusion (last {results['diffusion']['context_frames']} context frames)"
    return names.get(method, method)


def pm(stat: dict | None, metric: str) -> str:
    """'mean ± std' of a stats dict; '–' when missing; 'mean (1 group)' without a std."""
    if not stat or stat.get("mean") is None:
        return "–"
    d = DIGITS.get(metric, 3)
    if stat.get("std") is None:
        return f"{stat['mean']:.{d}f} (1 group)"
    return f"{stat['mean']:.{d}f} ± {stat['std']:.{d}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


# ----------------------------------------------------------------- one run

def summary_table(results: dict) -> str:
    """Method x metric, mean ± std over groups."""
    rows = [[method_name(m, results)] + [pm(results["action_conditioned"][m][k], k) for k in METRICS]
            for m in results["methods"]]
    return table(["method"] + [HEADERS[k] for k in METRICS], rows)


def revisit_sides(rv: dict) -> tuple[str, ...]:
    """The frame sets a revisit result holds: revisited, new, and (newer runs) memory."""
    first = next(iter(rv["methods"].values()))[METRICS[0]]
    return ("revisited", "memory", "new") if "memory" in first else ("revisited", "new")


def revisit_table(results: dict) -> str | None:
    rv = results["revisit"]
    if not rv.get("available"):
        return None
    sides = revisit_sides(rv)
    rows = [[method_name(m, results)] + [pm(rv["methods"][m][k][side], k) for k in METRICS for side in sides]
            for m in results["methods"]]
    header = ["method"] + [f"{HEADERS[k]} {side}" for k in METRICS for side in sides]
    return table(header, rows)


def speed_table(results: dict) -> str:
    names = {"teco": "TECO (action-conditioned)", "teco_short": "TECO, short window",
             "uncond": "TECO (unconditional)", "diffusion": "latent diffusion (action-conditioned)",
             "diffusion_uncond": "latent diffusion (unconditional)"}
    rows = []
    for name, s in results["speed"].items():
        compile_s = "included" if s.get("compile_included") else fmt(s.get("compile_s"))
        rows.append([names.get(name, name), s["window"], fmt(s["frames_per_s"]), s["generated_frames"],
                     fmt(s["seconds"]), compile_s])
    return table(["rollout", "window (frames)", "frames/s", "frames", "seconds", "compile (s)"], rows)


def speed_ratio(results: dict) -> float | None:
    """TECO's action-conditioned frames/s over the diffusion baseline's (None without it)."""
    return results.get("diffusion", {}).get("speed_ratio")


def speed_ratio_line(results: dict) -> str:
    ratio = speed_ratio(results)
    return f"Sampling speed, TECO : diffusion = {fmt(ratio, 2)} : 1 (action-conditioned frames/s)"


def diffusion_lines(results: dict) -> list[str]:
    """The diffusion baseline's checkpoint line of the report header (none without it)."""
    if "diffusion" not in results:
        return []
    d = results["diffusion"]
    line = (f"- diffusion baseline: `{d['checkpoint']}` (step {d['step']}), window {d['window']} frames, "
            f"sampler {d['sampler']}")
    return [line]


def render(results: dict) -> str:
    """The report of one benchmark run (markdown)."""
    p, d = results["protocol"], results["device"]
    out = [f"# TECO benchmark: {Path(results['checkpoint']).name} (step {results['step']})", "",
           f"- checkpoint: `{results['checkpoint']}`",
           f"- data: `{results['data']}` (split {results['split']}), {p['num_videos']} videos in "
           f"{p['num_groups']} groups of {p['group_size']}",
           f"- protocol (preset {p['preset']}): {p['context']} context + {p['predict']} predicted frames "
           f"(action-conditioned); {p['uncond_context']} + {p['uncond_predict']} (unconditional, "
           f"{p['uncond_actions']} actions); short-window baseline {p['short_window']} frames; model window "
           f"{p['model_window']} frames",
           f"- sampler: {p['sampler']}",
           *diffusion_lines(results),
           f"- device: {d['platform']} ({d['kind']}) x{d['count']}, {d['host_cpus']} host CPUs; jax {d['jax']}",
           f"- date: {results['date']}; wall time {results['wall_time_s']:.0f} s", ""]
    if results["notes"]:
        out += ["## Notes", ""] + [f"- **{n}**" for n in results["notes"]] + [""]
    out += ["## Action-conditioned rollouts (predicted frames)", "",
            f"Mean ± std over {p['num_groups']} groups of {p['group_size']} videos.", "",
            summary_table(results), ""]
    rv = revisit_table(results)
    out += ["## Revisited vs new places", ""]
    if rv is None:
        out += [f"Skipped: {results['revisit'].get('note', 'no poses')}.", ""]
    else:
        r = results["revisit"]
        out += [f"{r['revisited_frames']} predicted frames look at a place seen in the context (same cell, "
                f"heading within {r['max_angle_deg']:g}°), {r['new_frames']} do not "
                f"(revisit fraction {r['fraction']:.3f}). Frames pooled per group; mean ± std over groups."]
        if "memory_frames" in r:
            out[-1] += (f" \"memory\": the {r['memory_frames']} revisited frames whose place only context frames "
                        f"before the last {r['short_window']} showed (the short-window baseline never saw it).")
        if "model_context" in r:
            out[-1] += (f" Only {r['revisited_in_model_context']} of the revisited frames look at a place that the "
                        f"last {r['model_context']} context frames (all the model is given) show.")
        out += ["", rv, ""]
    u = results["unconditional"]
    short = {"teco": "TECO", "diffusion": "latent diffusion"}
    if "fvd_groups" in u:  # per group, mean ± std over groups, as TECO reports it
        stats = {m: v for m, v in u["fvd_groups"].items() if v is not None}
        fvd = ", ".join(f"{short.get(m, m)} **{pm(v, 'fvd')}** (all {u['num_videos']} videos at once: "
                        f"{v['all_videos']:.1f})" for m, v in stats.items())
        where = f"per group of {next(iter(stats.values()))['group_size']} videos, mean ± std over groups" if stats else ""
    else:
        per_method = u.get("fvd_per_method", {"teco": u["fvd"]})
        fvd = ", ".join(f"{short.get(m, m)} **{v:.1f}**" for m, v in per_method.items() if v is not None)
        where = f"{u['num_videos']} videos"
    fvd = fvd or "not computed (--no_fvd)"
    out += ["## Unconditional rollouts", "",
            f"FVD (I3D, 224×224, whole {u['clip_frames']}-frame clips{', ' + where if where else ''}): {fvd}", "",
            "## Sampling speed", "",
            "Generated frames per second, batched (sampling + VQ-GAN decoding), compilation apart.", "",
            speed_table(results), ""]
    if "diffusion" in results:
        out += [f"**{speed_ratio_line(results)}**", ""]
    files = results.get("files", {})
    if files.get("plots"):
        out += ["## Plots", ""] + [f"![{f}]({f})" for f in files["plots"]] + [""]
    if files.get("videos"):
        out += ["## Videos (real | generated | error; green: context, red: generated)", "",
                ", ".join(f"[{v}]({v}.mp4)" for v in files["videos"]), ""]
    return "\n".join(out)


# ----------------------------------------------------------------- several runs

def run_label(results: dict, taken: set[str]) -> str:
    """checkpoint name@step, made unique."""
    label = f"{Path(results['checkpoint']).name}@{results['step']}"
    base, i = label, 2
    while label in taken:
        label, i = f"{base} ({i})", i + 1
    taken.add(label)
    return label


def paired_diff(a: list[float | None], b: list[float | None]) -> dict:
    """a - b over groups paired by index: {"mean", "std"}, "std" being the standard error of
    the mean (None for one group). Groups missing on either side (None: no frames of that
    kind, e.g. no memory frames) are left out; {"mean": None} when none is left."""
    d = [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not d:
        return {"mean": None, "std": None}
    se = statistics.stdev(d) / len(d) ** 0.5 if len(d) > 1 else None
    return {"mean": statistics.fmean(d), "std": se}


def paired_table(all_results: list[dict], labels: list[str]) -> str | None:
    """Each run's TECO minus the first run's TECO, and minus its copy-last baseline, paired by
    group; None unless every run scored the same videos (data, split, PAIRED_KEYS)."""
    def videos(r):
        return (r.get("data"), r.get("split")) + tuple(r["protocol"].get(k) for k in PAIRED_KEYS)

    if len(all_results) < 2 or len({videos(r) for r in all_results}) > 1:
        return None
    def row(label: str, name: str, a: dict, b: dict) -> list[str]:  # a, b: metric -> stats with "groups"
        return [label, name] + [pm(paired_diff(a[k]["groups"], b[k]["groups"]), k) for k in METRICS]

    first = all_results[0]["action_conditioned"]["teco"]
    rows = []
    for i, (label, r) in enumerate(zip(labels, all_results)):
        ac = r["action_conditioned"]
        if i > 0:
            rows.append(row(label, f"TECO − TECO of {labels[0]}", ac["teco"], first))
        if "copy_last" in ac:
            rows.append(row(label, "TECO − copy last context frame", ac["teco"], ac["copy_last"]))
        rv = r.get("revisit", {})
        if rv.get("available") and "teco_short" in rv["methods"] and "memory" in revisit_sides(rv):
            memory = {m: {k: rv["methods"][m][k]["memory"] for k in METRICS} for m in ("teco", "teco_short")}
            rows.append(row(label, f"memory frames: TECO − {method_name('teco_short', r)}", memory["teco"],
                            memory["teco_short"]))
    return table(["run", "difference"] + [HEADERS[k] for k in METRICS], rows)


def merge(all_results: list[dict], paths: list[str] | None = None) -> str:
    """One report over several runs: one row per (run, method)."""
    taken: set[str] = set()
    labels = [run_label(r, taken) for r in all_results]
    paths = paths or [""] * len(all_results)
    protocols = {tuple(r["protocol"].get(k) for k in PROTOCOL_KEYS) for r in all_results}
    out = ["# TECO benchmark: comparison", ""]
    if len(protocols) > 1:
        out += ["**The runs use different protocols (see the last table): their numbers do not compare "
                "directly.**", ""]
    rows = [[label, method_name(m, r)] + [pm(r["action_conditioned"][m][k], k) for k in METRICS]
            for label, r in zip(labels, all_results) for m in r["methods"]]
    out += ["## Action-conditioned rollouts", "", table(["run", "method"] + [HEADERS[k] for k in METRICS], rows), ""]
    paired = paired_table(all_results, labels)
    if paired:
        groups = all_results[0]["protocol"].get("num_groups")
        out += ["## Paired differences", "", f"The runs scored the same test videos: differences per group of videos, "
                f"mean ± standard error over the {groups} groups (significant when the mean is about twice its error or "
                "more).", "", paired, ""]
    rows = []
    sides = ("revisited", "new")
    if all(r["revisit"].get("available") and "memory" in revisit_sides(r["revisit"]) for r in all_results):
        sides = ("revisited", "memory", "new")
    for label, r in zip(labels, all_results):
        rv = r["revisit"]
        for m in r["methods"]:
            if rv.get("available"):
                cells = [pm(rv["methods"][m][k][side], k) for k in METRICS for side in sides]
            else:
                cells = ["–"] * (len(sides) * len(METRICS))
            rows.append([label, method_name(m, r)] + cells)
    header = ["run", "method"] + [f"{HEADERS[k]} {side}" for k in METRICS for side in sides]
    out += ["## Revisited vs new places", "", table(header, rows), ""]
    rows = [[label, fmt(r["unconditional"]["fvd"]),
             fmt(r["unconditional"].get("fvd_per_method", {}).get("diffusion")),
             fmt(r["speed"]["teco"]["frames_per_s"]), fmt(r["speed"]["teco_short"]["frames_per_s"]),
             fmt(r["speed"].get("diffusion", {}).get("frames_per_s")), fmt(speed_ratio(r), 2),
             f"{r['device']['platform']} ({r['device']['kind']})"]
            for label, r in zip(labels, all_results)]
    header = ["run", "FVD ↓", "diffusion FVD ↓", "TECO frames/s", "short-window frames/s", "diffusion frames/s",
              "TECO : diffusion", "device"]
    out += ["## FVD and speed", "", table(header, rows), ""]
    rows = [[label] + [r["protocol"].get(k) for k in PROTOCOL_KEYS] + [r["protocol"]["model_window"], r["date"], path]
            for label, r, path in zip(labels, all_results, paths)]
    out += ["## Protocols", "", table(["run"] + list(PROTOCOL_KEYS) + ["model window", "date", "results"], rows), ""]
    notes = [(label, n) for label, r in zip(labels, all_results) for n in r["notes"]]
    if notes:
        out += ["## Notes", ""] + [f"- {label}: {n}" for label, n in notes] + [""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="results.json files written by eval.benchmark")
    p.add_argument("--out", type=Path, default=None, help="markdown file to write (default: print it)")
    args = p.parse_args(argv)
    loaded = []
    for path in args.results:
        try:
            r = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            print(f"error: cannot read {path}: {e}", file=sys.stderr)
            return 1
        if not isinstance(r, dict) or "action_conditioned" not in r:
            print(f"error: {path} is not a results.json of eval.benchmark", file=sys.stderr)
            return 1
        loaded.append(r)
    text = render(loaded[0]) if len(loaded) == 1 else merge(loaded, [str(p) for p in args.results])
    if args.out is None:
        print(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out} ({len(loaded)} run(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
