"""Command line: parse, validate, print, call the library. No training or data logic here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from postergen import __version__
from postergen.errors import UserError


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic poster set (JPEGs + Kaggle-style CSV)")
    p.add_argument("out", type=Path, help="output folder: OUT/images/<id>.jpg and OUT/MovieGenre.csv")
    p.add_argument("--n", type=int, default=2000, help="number of posters")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same posters")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    from postergen.data.synth import generate

    if args.n < 1:
        raise UserError(f"--n must be at least 1 (got {args.n})")
    summary = generate(args.out, n=args.n, seed=args.seed, workers=args.workers, force=args.force)
    print(f"wrote {summary['count']} posters to {args.out / 'images'} and {args.out / 'MovieGenre.csv'}")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from postergen.data.ingest import PrepareConfig

    d = PrepareConfig()
    p = sub.add_parser("prepare", help="turn poster folders or zips into a dataset folder")
    p.add_argument("src", nargs="+", type=Path, help="poster folders and/or .zip files")
    p.add_argument("-o", "--out", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--size", type=int, default=d.size, help="short side in pixels, 32-512 (default %(default)s)")
    p.add_argument("--aspect", choices=["1:1", "2:3"], default=d.aspect,
                   help="1:1 square, or 2:3 (W x H = size x 1.5*size, the posters' shape) (default %(default)s)")
    p.add_argument("--fit", choices=["crop", "pad"], default=d.fit,
                   help="center crop (the seed's choice) or pad to the aspect (default %(default)s)")
    p.add_argument("--labels", type=Path, default=None,
                   help="genre CSV: Kaggle MovieGenre.csv or id + 0/1 genre columns "
                        "(default: a single .csv at the top of a source, else genre subfolders, else none)")
    p.add_argument("--no-labels", action="store_true", help="ignore any CSV and subfolder genres")
    p.add_argument("--genres", default=None, help="keep only posters with any of these genres, e.g. horror,action")
    p.add_argument("--min-side", type=int, default=d.min_side, help="skip images whose short side is below this (default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help="refuse images above this many pixels without decoding them (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace DATASET if it exists")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> None:
    from postergen.data.ingest import PrepareConfig, prepare

    if not 32 <= args.size <= 512:
        raise UserError(f"--size must be between 32 and 512 (got {args.size})")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    genres = None
    if args.genres is not None:
        genres = [g.strip() for g in args.genres.split(",") if g.strip()]
        if not genres:
            raise UserError("--genres is empty; give names like horror,action")
    cfg = PrepareConfig(
        size=args.size, aspect=args.aspect, fit=args.fit, labels=args.labels, use_labels=not args.no_labels,
        genres=genres, min_side=args.min_side, max_pixels=args.max_pixels,
        workers=args.workers or os.cpu_count() or 1,
    )
    meta = prepare(args.src, args.out, cfg, force=args.force)
    h, w = meta["size"]
    print(f"dataset {args.out}: {meta['count']} posters at {w}x{h}, {len(meta['genres'])} genres, "
          f"{len(meta['skipped'])} skipped ({meta['prepare']['seconds']:.1f} s)")


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a dataset folder")
    p.add_argument("path", type=Path, help="dataset folder")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> None:
    from postergen.data.dataset import describe

    print(describe(args.path))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="postergen", description="Train GANs on movie posters and generate new ones.")
    parser.add_argument("--version", action="version", version=f"postergen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_synth, _add_prepare, _add_info):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"postergen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"postergen {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
