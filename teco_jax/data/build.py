"""CLI: turn episode files (TECO authors' layout) into a TFDS array_record dataset.

    python -m teco_jax.data.build --src data/dmlab --out data/dmlab_tfds [--splits test]

reads SRC/{train,test}/**/*.npz (or *.mp4, with a sibling .npz holding `actions` or
without one: the null action) and writes OUT/<name>/1.0.0/, which `teco_jax.data.pipeline`
reads. --splits names the splits to convert (comma-separated or repeated; default: every
split found). The action set is --num_actions, else SRC/meta.json's (`num_actions`,
`action_names`: episodes with actions outside it are refused), else inferred from the data
as the largest action + 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from teco_jax.data import tfds_write
from teco_jax.errors import UserError


def parse_splits(values: list[str] | None) -> list[str] | None:
    """--splits values ("train,test", or the flag repeated) as a list without repeats; None if absent."""
    if not values:
        return None
    names = [s.strip() for v in values for s in v.split(",") if s.strip()]
    return list(dict.fromkeys(names))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="episode root holding train/ and/or test/")
    parser.add_argument("--out", type=Path, required=True, help="TFDS data directory to write")
    parser.add_argument("--name", default=None, help="dataset name (default: derived from --src)")
    parser.add_argument("--num_actions", type=int, default=None,
                        help="size of the action set; actions are checked against it "
                             "(default: read from SRC/meta.json when present)")
    parser.add_argument("--skip_bad", action="store_true",
                        help="report and skip unreadable or invalid episode files instead of stopping")
    parser.add_argument("--splits", action="append", metavar="SPLIT[,SPLIT]",
                        help="splits to convert, comma-separated or the flag repeated (default: all found)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        meta = tfds_write.build_from_episodes(args.src, args.out, args.name, args.num_actions, args.skip_bad,
                                              parse_splits(args.splits))
    except (UserError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if meta.num_actions_inferred:
        print(inferred_note(args.src, meta.num_actions))
    print(f"wrote {meta.name} to {args.out} in {time.perf_counter() - start:.1f}s: "
          f"{meta.num_examples} episodes of {meta.min_length}-{meta.max_length} frames, "
          f"{meta.frame_feature} {meta.frame_shape}, {meta.describe_actions()}")
    return 0


def inferred_note(src: Path | str, num_actions: int) -> str:
    """The line printed when no meta.json or flag gave the action count."""
    return (f"note: {src} has no meta.json naming its actions: num_actions={num_actions} inferred from the "
            f"data (largest action + 1); pass --num_actions N if the action set is larger")


if __name__ == "__main__":
    sys.exit(main())
