"""Write a seeded synthetic feature CSV of normal strokes (until real features exist).

    PYTHONPATH=tools/python python -m forgeline_ml.synth_features --out out/synthetic.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data import synthetic_normal_strokes, write_features_csv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="forgeline_ml.synth_features", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="CSV to write")
    p.add_argument("--rows", type=int, default=4000, help="number of strokes (default 4000)")
    p.add_argument("--features", type=int, default=29, help="number of features (default 29)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    args = p.parse_args(argv)
    write_features_csv(args.out, synthetic_normal_strokes(args.rows, args.features, args.seed))
    print(f"wrote {args.rows} synthetic strokes x {args.features} features to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
