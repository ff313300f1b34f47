"""Command line: parse, validate, print, call the library. No training or data logic here."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from postergen import __version__
from postergen.errors import UserError
from postergen.files import check_replaceable, os_error

# Limits of options that have no config dataclass (the others are in config.py and engine/sr.py).
MAX_SIZE = 512  # px: prepare --size, the largest an upscaler learns to make (the smallest is the GAN's)
MAX_SIDE = 65_535  # px: --min-side (the largest side most image formats can store)
MAX_PIXELS = 1_000_000_000  # pixels: --max-pixels (a 1-gigapixel image needs 3 GB decoded)
MAX_WORKERS = 256  # processes
MAX_POSTERS = 1_000_000  # synth --n, evaluate --n
MAX_ROW = 1024  # sample --n: posters per genre row
MAX_FRAMES = 256  # sample --frames
MAX_HOLDOUT = 50.0  # percent: prepare --holdout (beyond half, most posters would never train)


class _Parser(argparse.ArgumentParser):
    """A malformed command line is one line too, like every other error (not argparse's usage block)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _path(text: str) -> Path:
    """argparse type for paths: an empty string would silently mean the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


def _check(check, *args, **kw) -> None:
    """Run one of config's check_* functions; its ValueError becomes the command's one-line error."""
    try:
        check(*args, **kw)
    except ValueError as e:
        raise UserError(str(e)) from None


def _limit(option: str, value, *args, **kw) -> None:
    """`option` within its range (config.check_range), as the command's one-line error."""
    from postergen.config import check_range

    _check(check_range, option, value, *args, **kw)


def _check_device(name: str) -> None:
    from postergen.config import DEVICES, check_choice

    _check(check_choice, "--device", name, DEVICES)


def _check_workers(workers: int | None) -> None:
    if workers is not None:
        _limit("--workers", workers, 1, MAX_WORKERS, "processes")


def _check_output(path: Path, folder: bool) -> None:
    """Before any work: `path` can be written as an output folder (folder=True) or file.

    A file where a folder belongs (or the reverse) is a user error; a read-only or forbidden place
    raises the OSError the first write would raise, now instead of after minutes of work.
    """
    want, found = ("folder", "file") if folder else ("file", "folder")
    if path.exists() and path.is_dir() != folder:
        raise UserError(f"{path} is a {found}; give the name of a {want} to write")
    start = (path if folder else path.parent).absolute()
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"{existing} is a file, so {path} cannot be made inside it")
    if not os.access(existing, os.W_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY
        code = errno.EROFS if read_only else errno.EACCES
        raise OSError(code, os.strerror(code), str(existing))


def _gan_widths() -> str:
    """'32, 64, 128 or 256': the widths the GAN is built for (config.WIDTHS, the one list)."""
    from postergen.config import WIDTHS

    return f"{', '.join(map(str, WIDTHS[:-1]))} or {WIDTHS[-1]}"


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic poster set (JPEGs + Kaggle-style CSV)")
    p.add_argument("out", type=_path, help="output folder: OUT/images/<id>.jpg and OUT/MovieGenre.csv")
    p.add_argument("--n", type=int, default=2000, help="number of posters")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same posters")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> None:
    from postergen.config import MAX_SEED
    from postergen.data.synth import generate

    _limit("--n", args.n, 1, MAX_POSTERS, "posters")
    _limit("--seed", args.seed, 0, MAX_SEED)
    _check_workers(args.workers)
    _check_output(args.out, folder=True)
    summary = generate(args.out, n=args.n, seed=args.seed, workers=args.workers, force=args.force)
    print(f"wrote {summary['count']} posters to {args.out / 'images'} and {args.out / 'MovieGenre.csv'}")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    from postergen.data.ingest import PrepareConfig

    d = PrepareConfig()
    p = sub.add_parser("prepare", help="turn poster folders, zips or tars into a dataset folder")
    p.add_argument("src", nargs="+", type=_path, help="poster folders, .zip files and/or uncompressed .tar files")
    p.add_argument("-o", "--out", type=_path, required=True, help="dataset folder to write")
    p.add_argument("--size", type=int, default=d.size,
                   help=f"short side in pixels, at most {MAX_SIZE}; `train` needs {_gan_widths()}, `train-sr` "
                        "takes any (default %(default)s)")
    p.add_argument("--aspect", choices=["1:1", "2:3"], default=d.aspect,
                   help="1:1 square, or 2:3 (W x H = size x 1.5*size, the posters' shape) (default %(default)s)")
    p.add_argument("--fit", choices=["crop", "pad"], default=d.fit,
                   help="center crop (the seed's choice) or pad to the aspect (default %(default)s)")
    p.add_argument("--labels", type=_path, default=None,
                   help="genre CSV: Kaggle MovieGenre.csv or id + 0/1 genre columns "
                        "(default: a single .csv at the top of a source, else genre subfolders, else none)")
    p.add_argument("--no-labels", action="store_true", help="ignore any CSV and subfolder genres")
    p.add_argument("--genres", default=None, help="keep only posters with any of these genres, e.g. horror,action")
    p.add_argument("--min-side", type=int, default=d.min_side, help="skip images whose short side is below this (default %(default)s)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help="refuse images above this many pixels without decoding them (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--holdout", type=float, default=d.holdout, metavar="PERCENT",
                   help="set this percent of posters aside (seeded, by genre), never trained on: evaluate's real "
                        f"posters and D's unseen ones in metrics.jsonl (d_heldout), at most {MAX_HOLDOUT:g} "
                        "(default %(default)s: none)")
    p.add_argument("--force", action="store_true", help="replace DATASET if it exists")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> None:
    from postergen.config import WIDTHS
    from postergen.data.ingest import PrepareConfig, prepare

    _limit("--size", args.size, WIDTHS[0], MAX_SIZE, "px")
    _limit("--min-side", args.min_side, 0, MAX_SIDE, "px")
    _limit("--max-pixels", args.max_pixels, 1, MAX_PIXELS, "pixels")
    _limit("--holdout", args.holdout, 0.0, MAX_HOLDOUT, "percent")
    _check_workers(args.workers)
    if args.no_labels and (args.labels is not None or args.genres is not None):
        raise UserError(f"--no-labels drops all genres; it cannot go with --{'labels' if args.labels else 'genres'}")
    if args.labels is not None and args.labels.is_dir():
        raise UserError(f"--labels {args.labels} is a folder; give the genre CSV file")
    genres = None
    if args.genres is not None:
        genres = [g.strip() for g in args.genres.split(",") if g.strip()]
        if not genres:
            raise UserError("--genres is empty; give names like horror,action")
    cfg = PrepareConfig(
        size=args.size, aspect=args.aspect, fit=args.fit, labels=args.labels, use_labels=not args.no_labels,
        genres=genres, min_side=args.min_side, max_pixels=args.max_pixels,
        workers=args.workers or os.cpu_count() or 1, holdout=args.holdout,
    )
    _check_output(args.out, folder=True)
    if args.size not in WIDTHS:  # said first: preparing a large set takes a while
        print(f"note: --size {args.size} px suits `train-sr` only; `train` needs --size {_gan_widths()}",
              file=sys.stderr)
    meta = prepare(args.src, args.out, cfg, force=args.force)
    h, w = meta["size"]
    print(f"dataset {args.out}: {meta['count']} posters at {w}x{h}, {len(meta['genres'])} genres, "
          f"{len(meta['skipped'])} skipped ({meta['prepare']['seconds']:.1f} s)"
          + (f"; {len(meta['holdout']['indices'])} held out" if "holdout" in meta else ""))


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="describe a dataset, run or exported generator, or print a generated PNG's provenance")
    p.add_argument("path", type=_path, help="dataset folder, run folder, export (folder or .safetensors) or PNG file")
    p.set_defaults(func=_run_info)


def _run_info(args: argparse.Namespace) -> None:
    from postergen.weights import export_in

    export = args.path if args.path.suffix == ".safetensors" and args.path.is_file() else export_in(args.path)
    if export is not None:
        from postergen.runinfo import describe_export

        print(describe_export(export))
        return
    if args.path.is_file():
        from postergen.provenance import describe as describe_png

        print(describe_png(args.path))
        return
    from postergen.runfolder import RunFolder

    if RunFolder(args.path).config.is_file() and not (args.path / "dataset.json").exists():
        from postergen.runinfo import describe_run

        print(describe_run(args.path))
        return
    from postergen.data.dataset import describe

    print(describe(args.path))


_TRAIN_OWN = {"preset", "steps", "minutes", "model_options"}  # given their own options below
_OWN_OPTION = "model_option_"  # argparse dest prefix of a model family's own options (TrainConfig.model_options)


def _add_config_options(p: argparse.ArgumentParser, config_class, skip: set[str] = frozenset(),
                        alternative: tuple[str, dict] | None = None, choices: dict | None = None,
                        helps: dict | None = None) -> None:
    """One --flag per dataclass field, help from the field's doc (or `helps`, for a field whose help the
    registries make); defaults stay in the dataclass only (every flag defaults to None: "not given")."""
    import dataclasses

    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        note = f"default {f.default!r}"
        if alternative and f.name in alternative[1]:
            note += f"; {alternative[0]} {alternative[1][f.name]!r}"
        text = f"{(helps or {}).get(f.name) or f.metadata['doc']} ({note})"
        if type(f.default) is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            p.add_argument(flag, type=type(f.default), default=None, metavar=f.name.upper(), help=text,
                           choices=(choices or {}).get(f.name))


def _checked_or_printed(cfg, check, dry_run: bool) -> bool:
    """Range-check a config (ValueError -> one-line user error); with --dry-run print it and say so."""
    import dataclasses
    import json

    try:
        check(cfg)
    except ValueError as e:
        raise UserError(str(e)) from None
    if dry_run:
        print(json.dumps(dataclasses.asdict(cfg), indent=1))
    return dry_run


def _given_options(args: argparse.Namespace, config_class, skip: set[str] = frozenset()) -> dict:
    import dataclasses

    names = {f.name for f in dataclasses.fields(config_class)} - set(skip)
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _add_train(sub: argparse._SubParsersAction) -> None:
    from postergen.config import PRESETS, TrainConfig
    from postergen.models import registry

    p = sub.add_parser("train", help="train a GAN on a dataset folder",
                       description="Train the seed's DCGAN (--preset seed) or the stable poster recipe.")
    p.add_argument("dataset", type=_path, help="dataset folder from `postergen prepare`")
    p.add_argument("-o", "--out", type=_path, required=True, help="run folder (config, checkpoints, samples, metrics)")
    p.add_argument("--preset", choices=list(PRESETS), default=None,
                   help="stable: the recommended poster recipe; seed: the student project's DCGAN recipe; "
                        "projected: FastGAN's G and the projected D, at ngf 16, ndf 32 on a CPU (the measured "
                        "widths) and 64, 64 on CUDA (default: the recipe measured best for the device and "
                        "budget, src/postergen/recipes.json; stable where none was measured)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, help=f"training steps (default {TrainConfig.steps})")
    length.add_argument("--epochs", type=float, default=None, help="passes over the dataset (converted to steps)")
    length.add_argument("--kimg", type=float, default=None, help="thousands of images to show D (converted to steps)")
    _add_budget(p)
    p.add_argument("--resume", action="store_true", help="continue the run from checkpoints/latest.pt")
    p.add_argument("--allow-other-data", action="store_true",
                   help="let --resume continue on a dataset other than the run's (other posters; same size and genres)")
    p.add_argument("--force", action="store_true", help="start the run over, deleting its checkpoints and samples")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    _add_config_options(p, TrainConfig, skip=_TRAIN_OWN, alternative=("seed preset", PRESETS["seed"]),
                        helps={"arch": f"generator: {registry.describe('gan')}",
                               "discriminator": f"D: {registry.describe_discriminators()}"})
    _add_own_options(p)
    p.set_defaults(func=_run_train)


def _add_own_options(p: argparse.ArgumentParser) -> None:
    """--<field> for each gan family's own config fields (the registry's own_options), kept apart from
    TrainConfig's options until _run_train gathers them into model_options."""
    from postergen.models import registry

    families: dict[str, tuple] = {}
    for arch in registry.names("gan"):
        for f in registry.own_options(arch):
            families.setdefault(f.name, (f, []))[1].append(arch)
    for name, (f, archs) in families.items():
        doc = f.metadata.get("doc", name.replace("_", " "))
        p.add_argument("--" + name.replace("_", "-"), type=type(f.default), default=None, dest=_OWN_OPTION + name,
                       metavar=name.upper(), help=f"{doc} (--arch {' or '.join(archs)}; default {f.default!r})")


def _train_options(args: argparse.Namespace):
    """-> (the options given, the TrainConfig they make, the budget in minutes, the device type it trains
    on), every option checked before the dataset is read or anything is written."""
    from postergen.config import TrainConfig, from_preset
    from postergen.engine.gan import check_train
    from postergen.recipes import FALLBACK

    given = _given_options(args, TrainConfig, _TRAIN_OWN)
    if args.steps is not None:
        given["steps"] = args.steps
    own = {k.removeprefix(_OWN_OPTION): v for k, v in vars(args).items() if k.startswith(_OWN_OPTION)}
    if any(v is not None for v in own.values()):
        given["model_options"] = {k: v for k, v in own.items() if v is not None}
    for option, value in (("--epochs", args.epochs), ("--kimg", args.kimg)):
        if value is not None:
            _limit(option, value, 0.0, None, "epochs" if option == "--epochs" else "kimg", lo_open=True)
    minutes = _budget_minutes(args)
    device = given.get("device", TrainConfig.device)
    if device == "auto":  # a preset's widths may follow the device it trains on (config.CUDA_PRESETS)
        from postergen.runtime import pick_device

        device = pick_device(device).type
    cfg = from_preset(args.preset or FALLBACK, device_type=device, **given)  # no --preset: _recipe picks, later
    _check(check_train, cfg)
    return given, cfg, minutes, device


def _run_train(args: argparse.Namespace) -> int:
    import dataclasses

    from postergen.data.dataset import check_one_batch, open_dataset

    given, cfg, minutes, device = _train_options(args)
    if args.allow_other_data and not args.resume:
        raise UserError("--allow-other-data goes with --resume (a new run records whatever data it is given)")
    _check_output(args.out, folder=True)
    ds = open_dataset(args.dataset)
    _check_gan_size(ds)
    from postergen.checkpoint import load_latest
    from postergen.engine.gan import resolve, train

    start = load_latest(args.out) if args.resume else None  # a resumed run keeps its own settings
    world = int(os.environ.get("WORLD_SIZE", "1"))  # processes under torchrun: the global batch is batch x world
    if args.epochs is not None or args.kimg is not None:
        batch = start["config"]["train"]["batch"] if start else cfg.batch
        given["steps"] = _length_in_steps(args.epochs, args.kimg, batch * world, len(ds.training))
        cfg = dataclasses.replace(cfg, steps=given["steps"])
    budget = _length_fields(minutes, any(v is not None for v in (args.steps, args.epochs, args.kimg)), start)
    given, cfg = {**given, **budget}, dataclasses.replace(cfg, **budget)
    cfg, recipe = _recipe(args, cfg, given, ds, device)
    changed = set(given) | ({"preset"} if args.preset is not None else set())
    if args.dry_run:  # what would really run: the config.json this run would write (or has, resumed)
        import json

        config = resolve(ds, args.out, cfg, changed, start, args.allow_other_data, recipe=recipe)[1]
        if recipe:
            print(f"recipe {recipe}", file=sys.stderr)  # stdout stays the config's JSON
        print(json.dumps(config, indent=1))
        return 0
    if not args.resume:  # before anything is written; a resumed run keeps its own batch
        check_one_batch(ds, cfg.batch, world, "; give a smaller --batch")

    H, W = ds.meta["size"]
    quiet = os.environ.get("RANK", "0") != "0"  # under torchrun only rank 0 talks
    say = (lambda *a, **k: None) if quiet else print
    run_cfg = resolve(ds, args.out, cfg, changed, start, args.allow_other_data)[0] if start else cfg  # a resume's own
    held = f" ({len(ds.held_out)} held out)" if len(ds.held_out) else ""
    if recipe:
        say(f"recipe {recipe}")
    say(f"train {args.out}: preset {run_cfg.preset}, {W}x{H} px, {len(ds.training)} posters{held}, "
          f"{len(ds.genres) if run_cfg.conditional else 0} genres, {_length_text(run_cfg, start)}")
    summary = train(ds, args.out, cfg, resume=args.resume, force=args.force, changed=changed, echo=say,
                    allow_other_data=args.allow_other_data, recipe=recipe)
    if summary["interrupted"]:
        say(f"stopped at step {summary['step']}; checkpoint saved. Continue with: "
              f"postergen train {args.dataset} -o {args.out} --resume", file=sys.stderr)
        return 130
    replays = summary.get("cuda_graph_replays")
    graphs = f" ({replays} steps replayed as CUDA graphs)" if replays is not None else ""
    spent = f" ({summary['seconds'] / 60:.1f} min trained: the time budget)" if summary["out_of_time"] else ""
    say(f"done: step {summary['step']}{spent} on {summary['device']}{graphs}; samples in {summary['samples']}, "
        f"checkpoint {summary['latest']}")
    return 0


def _recipe(args: argparse.Namespace, cfg, given: dict, ds, device: str) -> tuple:
    """-> (the config a new run without --preset trains: recipes.choose's measured winner for its device,
    budget and genres, under the options given; why, in one line). A given --preset, or a resume's own
    settings, stay as they are."""
    if args.resume:
        return cfg, ""
    if args.preset is not None:
        return cfg, f"{cfg.preset}: given with --preset"
    from postergen import recipes
    from postergen.config import MAX_STEPS, from_preset
    from postergen.engine.gan import check_train

    if cfg.init_from:  # the parent's model, so its weights carry over
        from postergen.engine.transfer import parent_recipe

        preset, options = parent_recipe(cfg.init_from)
        choice = recipes.Choice(preset, options, f"{preset}: the parent's preset and model (--init-from)")
    else:
        choice = recipes.choose(device, cfg.conditional and len(ds.genres) > 1, cfg.batch, cfg.minutes or None,
                                cfg.steps if cfg.steps < MAX_STEPS else None)
    picked = from_preset(choice.preset, device_type=device,
                         **{**choice.options, **given, **({"steps": choice.steps} if choice.steps else {})})
    _check(check_train, picked)
    return picked, choice.reason


def _add_budget(p: argparse.ArgumentParser) -> None:
    """--minutes or --hours: the time budget every kind of training takes (config's `minutes`)."""
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, default=None,
                        help="train for this many minutes (on --resume: this many more) and end there as at a last "
                             "step (samples, checkpoint); alone it lifts the step limit, beside a step length the "
                             "first limit reached ends the run (default: no time limit)")
    budget.add_argument("--hours", type=float, default=None, help="--minutes in hours")


def _budget_minutes(args: argparse.Namespace) -> float | None:
    """--minutes or --hours in minutes, checked (finite, > 0); None when neither is given."""
    from postergen.config import MAX_MINUTES

    if args.hours is not None:
        _limit("--hours", args.hours, 0.0, MAX_MINUTES / 60, "hours", lo_open=True)
        return args.hours * 60
    if args.minutes is not None:
        _limit("--minutes", args.minutes, 0.0, MAX_MINUTES, "minutes", lo_open=True)
    return args.minutes


def _length_fields(minutes: float | None, length_given: bool, start: dict | None) -> dict:
    """The config fields the limits given set. `minutes` is the run's training time in all, so a
    resume's budget adds to the time already trained; a budget alone lifts the step limit and a step
    length alone lifts a run's budget: the limits a command gives are the ones that hold."""
    from postergen.config import MAX_STEPS

    if minutes is None:
        return {"minutes": 0.0} if length_given else {}
    total = {"minutes": minutes + (start.get("seconds", 0.0) / 60 if start else 0.0)}
    return total if length_given else {**total, "steps": MAX_STEPS}


def _length_text(cfg, start: dict | None) -> str:
    """The banner's run length: '3000 steps of 64', '30 min of training, batch 64' or both."""
    from postergen.config import MAX_STEPS

    if not cfg.minutes:
        return f"{cfg.steps} steps of {cfg.batch}"
    left = f"{max(0.0, cfg.minutes - (start.get('seconds', 0.0) / 60 if start else 0.0)):.4g} min"
    if cfg.steps >= MAX_STEPS:
        return f"{left} of training, batch {cfg.batch}"
    return f"{cfg.steps} steps of {cfg.batch} or {left}, whichever ends first"


def _length_in_steps(epochs: float | None, kimg: float | None, images_per_step: int, posters: int) -> int:
    """--epochs (passes over the posters) or --kimg (thousands of images shown to D) -> training steps;
    images_per_step is the global batch (batch x processes)."""
    from postergen.config import MAX_STEPS
    from postergen.engine.run import steps_for

    unit, value = ("epochs", epochs) if epochs is not None else ("kimg", kimg)
    if value * (max(1, posters // images_per_step) if unit == "epochs" else 1000 / images_per_step) > MAX_STEPS:
        raise UserError(f"--{unit} {value:g} is more than {MAX_STEPS} steps of {images_per_step} images, "
                        "the most a run takes")
    return steps_for(unit, value, images_per_step, posters)


def _check_gan_size(ds) -> None:
    """The GAN's sizes (config.check_size) are checked on the dataset before a run starts."""
    from postergen.config import check_size

    H, W = ds.meta["size"]
    try:
        check_size(H, W)
    except ValueError:
        raise UserError(f"{ds.path}: posters are {W}x{H} px; the GAN trains posters {_gan_widths()} px wide "
                        "(square or 2:3): prepare them again with that --size") from None


def _add_sample(sub: argparse._SubParsersAction) -> None:
    from postergen.weights import FORMATS

    p = sub.add_parser("sample", help="generate posters from a run, checkpoint or exported generator")
    p.add_argument("run", type=_path, help="run folder, checkpoint .pt, exported .safetensors, or a tutorial netG .pth")
    p.add_argument("-o", "--out", type=_path, required=True, help="output folder")
    p.add_argument("--n", type=int, default=8, help=f"posters per genre row, at most {MAX_ROW} (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="first seed; poster k uses seed+k (default %(default)s)")
    p.add_argument("--genre", action="append", default=None,
                   help="genre row to draw, e.g. horror or action+comedy; repeatable (default: every genre)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA generator when the run kept one (default on)")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True, help="write grid.png (default on)")
    p.add_argument("--singles", action=argparse.BooleanOptionalAction, default=True,
                   help="write one PNG per poster, named by genre and seed (default on)")
    p.add_argument("--truncation", type=float, default=None,
                   help="redraw latent entries beyond this magnitude, e.g. 1.5: fewer broken posters, less variety")
    p.add_argument("--interpolate", type=int, nargs=2, metavar=("SEED_A", "SEED_B"), default=None,
                   help="walk between two seeds: an animation and a strip instead of a grid")
    p.add_argument("--frames", type=int, default=16, help="frames of --interpolate (default %(default)s)")
    p.add_argument("--format", choices=["gif", "webp"], default="gif", help="animation format (default %(default)s)")
    p.add_argument("--upscale", type=_path, default=None, metavar="SR_RUN",
                   help="enlarge every poster with this trained upscaler (postergen train-sr)")
    # --arch: this option's old name (an architecture is a registry name elsewhere; this is a file's form)
    p.add_argument("--weights", "--arch", dest="form", choices=list(FORMATS), default=FORMATS[0],
                   help="dcgan-tutorial: RUN is a netG state_dict saved by PyTorch's DCGAN example/tutorial")
    p.add_argument("--batch", type=int, default=32,
                   help="posters drawn at once; memory grows with it, not with --n (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace files in OUT that postergen did not write")
    p.set_defaults(func=_run_sample)


def _run_sample(args: argparse.Namespace) -> None:
    from postergen.config import MAX_SEED, MAX_TRUNCATION
    from postergen.files import shown as printable
    from postergen.sample import interpolate, sample

    _limit("--n", args.n, 1, MAX_ROW, "posters")
    _limit("--batch", args.batch, 1, MAX_ROW, "posters")
    _limit("--seed", args.seed, 0, MAX_SEED)
    if args.truncation is not None:
        _limit("--truncation", args.truncation, 0.0, MAX_TRUNCATION, lo_open=True)
    genres = [g for spec in args.genre for g in spec.split(",")] if args.genre else None
    if genres and not all(name.strip() for g in genres for name in g.split("+")):
        raise UserError(f"--genre {','.join(args.genre)!r} has an empty genre name; give e.g. horror or action+comedy")
    _check_device(args.device)
    if args.interpolate:
        for seed in args.interpolate:
            _limit("--interpolate seed", seed, 0, MAX_SEED)
        _limit("--frames", args.frames, 2, MAX_FRAMES, "frames")
        if genres and len(genres) > 1:
            raise UserError("--interpolate draws one genre row; give one --genre (e.g. action+comedy)")
    _check_output(args.out, folder=True)
    if args.interpolate:
        r = interpolate(args.run, args.out, tuple(args.interpolate), args.frames, genres[0] if genres else None,
                        ema=args.ema, device=args.device, form=args.form, fmt=args.format, upscale=args.upscale,
                        truncation=args.truncation, force=args.force)
        print(f"interpolation: {r['animation']} and {r['strip']} ({r['frames']} frames)")
        return
    result = sample(args.run, args.out, n=args.n, seed=args.seed, genres=genres, ema=args.ema, grid=args.grid,
                    singles=args.singles, device=args.device, truncation=args.truncation, form=args.form,
                    upscale=args.upscale, batch=args.batch, force=args.force)
    shown = f", the first {result['grid_columns']} of each" if result["grid"] and result["grid_columns"] < args.n else ""
    print(f"step {result['step']}: {len(result['files'])} posters in {args.out}"
          + (f", grid {result['grid']} (rows: {', '.join(map(printable, result['rows']))}{shown})" if result["grid"] else ""))


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's generator as safetensors (weights + config) and a model card, for sharing")
    p.add_argument("run", type=_path, help="run folder or checkpoint")
    p.add_argument("-o", "--out", type=_path, required=True,
                   help="export folder (generator.safetensors + README.md, the model card), or a NAME.safetensors "
                        "file (README.md goes beside it)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True, help="export the EMA generator (default on)")
    p.add_argument("--force", action="store_true", help="replace OUT even if postergen did not write it")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> None:
    from postergen.modelcard import export, export_paths

    to_file = args.out.suffix == ".safetensors"
    if not to_file and args.out.suffix and not args.out.is_dir():  # a typo (g.pt) would become a folder
        raise UserError(f"{args.out}: give a NAME.safetensors file or an export folder (a name without a suffix)")
    _check_output(args.out, folder=not to_file)
    check_replaceable(list(export_paths(args.out)), args.force)
    meta = export(args.run, args.out, ema=args.ema)
    print(f"exported step {meta['step']} generator ({len(meta['genres'])} genres) to {meta['file']}, "
          f"model card {meta['card']}")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    from postergen.metrics import METRICS, default_metrics

    defaults = default_metrics()
    others = [name for name in METRICS if name not in defaults]
    p = sub.add_parser("evaluate", help="measure quality, variety and copying of a run (or of any images) against a dataset")
    p.add_argument("run", type=_path, nargs="?", default=None, help="run folder (or give --images instead)")
    p.add_argument("--images", type=_path, default=None, metavar="DIR",
                   help="evaluate a folder of PNG/JPEG posters from any generator instead of a run")
    p.add_argument("--data", type=_path, required=True, help="dataset folder (the real posters to compare with)")
    p.add_argument("--n", type=int, default=10000, help="posters generated and real posters compared (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="poster i uses seed+i (default %(default)s)")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated subset of {','.join(defaults)} (default: all of them)"
                        + (f", or {', '.join(others)}" if others else ""))
    p.add_argument("--json", type=_path, default=None, dest="json_path", metavar="PATH",
                   help="also write every result to this JSON file (likely copies by file name), pictures beside it")
    p.add_argument("--all-checkpoints", action="store_true",
                   help="evaluate every kept checkpoint: one line each in RUN/eval.jsonl (metric vs step)")
    p.add_argument("--inception-weights", type=_path, default=None,
                   help="local Inception-v3 weights file for FID/KID (nothing is downloaded; without it FID is skipped)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace --json's files even if postergen did not write them")
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from postergen.config import MAX_SEED
    from postergen.evaluate import evaluate, evaluate_images, format_table, json_files
    from postergen.metrics import default_metrics

    _limit("--n", args.n, 2, MAX_POSTERS, "posters")
    _limit("--seed", args.seed, 0, MAX_SEED)
    metrics = None
    if args.metrics is not None:
        metrics = [m.strip() for m in args.metrics.split(",")]
        if not all(metrics):
            example = ",".join(default_metrics()[:2])
            raise UserError(f"--metrics {args.metrics!r} has an empty name; give e.g. {example}, or leave it out for all")
    if args.inception_weights is not None and not args.inception_weights.is_file():
        why = "a folder, not the weights file" if args.inception_weights.is_dir() else "no such file"
        raise UserError(f"--inception-weights {args.inception_weights}: {why}")
    _check_device(args.device)
    if (args.run is None) == (args.images is None):
        raise UserError("evaluate takes a run folder or --images DIR, one of the two")
    if args.images is not None and args.all_checkpoints:
        raise UserError("--all-checkpoints needs a run folder, not --images")
    if args.json_path is not None:
        _check_output(args.json_path, folder=False)
        check_replaceable(json_files(args.json_path) if args.images else [args.json_path], args.force)
    echo = lambda line: print(line, file=sys.stderr)  # noqa: E731
    if args.images is not None:
        result = evaluate_images(args.images, args.data, n=args.n, seed=args.seed, metrics=metrics,
                                 json_path=args.json_path, inception_weights=args.inception_weights,
                                 device=args.device, progress=True, echo=echo)
    else:
        if args.run.is_dir():
            _check_output(args.run, folder=True)  # eval.json is written there at the end
        result = evaluate(args.run, args.data, n=args.n, seed=args.seed, metrics=metrics,
                          all_checkpoints=args.all_checkpoints, inception_weights=args.inception_weights,
                          device=args.device, progress=True, json_path=args.json_path, echo=echo)
    print(format_table(result))


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write RUN/report.html: curves, training health, samples, evaluation")
    p.add_argument("run", type=_path, help="run folder")
    p.add_argument("-o", "--out", type=_path, default=None, help="output HTML file (default RUN/report.html)")
    p.add_argument("--n", type=int, default=8, help="posters per genre row and per real/generated grid (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace OUT even if postergen did not write it")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> None:
    from postergen.report import report

    _limit("--n", args.n, 1, 64, "posters")
    _check_device(args.device)
    out = args.out if args.out is not None else args.run / "report.html"
    if args.out is not None or args.run.is_dir():
        _check_output(out, folder=False)
        check_replaceable([out], args.force)
    print(report(args.run, args.out, sample_n=args.n, device=args.device))


def _add_train_sr(sub: argparse._SubParsersAction) -> None:
    from postergen.engine.sr import SRTrainConfig
    from postergen.models import registry
    from postergen.models.sr import SCALES

    p = sub.add_parser("train-sr", help="train a super-resolution upscaler on posters prepared at the target size")
    p.add_argument("dataset", type=_path, help="dataset prepared at the high resolution, e.g. --size 256")
    p.add_argument("-o", "--out", type=_path, required=True, help="SR run folder")
    p.add_argument("--resume", action="store_true", help="continue the run from checkpoints/latest.pt")
    p.add_argument("--allow-other-data", action="store_true",
                   help="let --resume continue on a dataset other than the run's (same size and count)")
    p.add_argument("--force", action="store_true", help="start the run over")
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    _add_budget(p)
    _add_config_options(p, SRTrainConfig, skip={"minutes"}, choices={"scale": list(SCALES), "arch": registry.names("sr")},
                        helps={"arch": f"network: {registry.describe('sr')}"})
    p.set_defaults(func=_run_train_sr)


def _run_train_sr(args: argparse.Namespace) -> int:
    from postergen.checkpoint import load_latest
    from postergen.engine.sr import SRTrainConfig, check_sr_train, train_sr

    given = _given_options(args, SRTrainConfig, {"minutes"})
    minutes = _budget_minutes(args)
    start = load_latest(args.out) if args.resume and minutes is not None else None  # a budget adds to its time
    given |= _length_fields(minutes, "steps" in given, start)
    cfg = SRTrainConfig(**given)
    if args.allow_other_data and not args.resume:
        raise UserError("--allow-other-data goes with --resume (a new run records whatever data it is given)")
    if _checked_or_printed(cfg, check_sr_train, args.dry_run):
        return 0
    _check_output(args.out, folder=True)
    summary = train_sr(args.dataset, args.out, cfg, resume=args.resume, force=args.force, changed=set(given),
                       allow_other_data=args.allow_other_data)
    if summary.get("interrupted"):
        print(f"stopped at step {summary['step']}; checkpoint saved. Continue with: "
              f"postergen train-sr {args.dataset} -o {args.out} --resume", file=sys.stderr)
        return 130
    gain = summary.get("val_gain_db")
    spent = f" ({summary['seconds'] / 60:.1f} min trained: the time budget)" if summary["out_of_time"] else ""
    print(f"done: step {summary['step']}{spent}, checkpoint {summary['latest']}"
          + (f"; held-out PSNR {summary['val_psnr']:.2f} dB ({gain:+.2f} dB over bicubic)" if gain is not None else ""))
    return 0


def _add_upscale(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("upscale", help="enlarge images with a trained upscaler (any images, GAN samples included)")
    p.add_argument("images", nargs="+", type=_path, help="image files")
    p.add_argument("-o", "--out", type=_path, required=True, help="output folder (PNG, <name>_x<scale>.png)")
    p.add_argument("--model", type=_path, required=True, help="SR run folder or its checkpoint")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default %(default)s)")
    p.set_defaults(func=_run_upscale)


def _run_upscale(args: argparse.Namespace) -> None:
    from postergen.upscale import upscale_files

    _check_device(args.device)
    _check_output(args.out, folder=True)
    result = upscale_files(args.images, args.out, args.model, device=args.device)
    for item in result["skipped"]:
        print(f"skipped {item['path']}: {item['reason']}", file=sys.stderr)
    print(f"upscaled {len(result['written'])} image(s) x{result['scale']} into {args.out}")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="a local web studio: generate, browse and download posters")
    p.add_argument("root", type=_path,
                   help="a run folder, or a folder of runs (a super-resolution run among or beside them enables upscaling)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="another name in the Host header to answer to, e.g. this machine's name on your network "
                        "(repeatable; requests for other names are refused: DNS-rebinding defence)")
    p.add_argument("--port", type=int, default=8000, help="port (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default %(default)s)")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> None:
    try:
        from postergen.web.app import serve
    except ImportError as e:
        raise UserError(f"the studio needs its extras ({e.name} is missing): pip install 'postergen[web]'") from None
    _check_device(args.device)
    names = [n.strip() for n in args.allowed_host]
    if not all(names):
        raise UserError("--allowed-host is empty; give a host name such as studio.local")
    serve(args.root, args.host, args.port, args.device, allowed_hosts=names)


# The commands, in --help's order: each adds its subparser (and sets its _run_ function).
COMMANDS = [_add_synth, _add_prepare, _add_info, _add_train, _add_sample, _add_export, _add_evaluate, _add_report,
            _add_train_sr, _add_upscale, _add_serve]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="postergen", description="Train GANs on movie posters and generate new ones.")
    parser.add_argument("--version", action="version", version=f"postergen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except UserError as e:
        print(f"postergen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only folder, no permission, a file where a folder belongs, ...
        print(f"postergen {args.command}: error: {os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"postergen {args.command}: interrupted", file=sys.stderr)
        return 130
    return code or 0
