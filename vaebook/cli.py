"""Command line: ``python -m vaebook {train,evaluate,reproduce,list}``.

- ``train``: train a VAE, or resume one (``--resume RUN_DIR``); its flags are generated from
  the fields of :class:`~vaebook.vae.config.TrainConfig`, each with its help and default.
- ``evaluate``: ELBO, IWAE-k and the log-likelihood estimate of a run's test split.
- ``reproduce``: retrain the runs the book renders (``--jobs N`` side by side), or a preset.
- ``list``: the data sets, and the runs in a folder.

A concept has one flag in every command (``--runs-dir``, ``--device``, ``--seed``,
``--data-dir``, ``--epochs``, ``--progress``), described once, by the configuration field
it sets. Commands dispatch through the parser (each sub-parser names its function). Bad
input (unknown data set, missing MNIST folder, non-positive numbers, batch larger than the
data, unreadable or foreign checkpoint, unknown config keys, a forged array header)
prints one line ``vaebook: error: ...`` on stderr and exits with status 2. The benchmark is
a tool outside the package: ``python tools/bench.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

# vaebook.vae.config imports no torch, so argument errors come back at once.
from .vae.config import DATASETS, SECTIONS, ConfigError, TrainConfig, check_field

SECTION_TITLES = {"data": "data", "model": "model", "optim": "optimisation", "run": "run"}
RESUME_FLAGS = ("epochs", "progress", "threads", "device")  # what --resume may change


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str):  # noqa: D102 -- argparse API
        sys.stderr.write(f"vaebook: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


# -- flags generated from the configuration's fields --------------------------------------
def _shown(value, meta: dict) -> str:
    if value is None:
        return meta["unset"]
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _parse(name: str, meta: dict):
    """The argparse type of field ``name``: the text parsed by the field's kind, then
    checked by the one check the configuration uses (:func:`check_field`)."""
    kind = meta["kind"]

    def parse(text: str):
        try:
            if kind == "widths":
                value = [int(v) for v in text.split(",") if v.strip()]
            elif "int" in kind:
                value = int(text)
            elif kind in ("positive number", "fraction", "decay", "weight"):
                value = float(text)
            else:
                value = text
        except ValueError:
            raise argparse.ArgumentTypeError(f"cannot read {text!r} as {kind}") from None
        try:
            check_field(name, value, meta)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    return parse


def config_flag(parser, name: str, *, default=argparse.SUPPRESS, shown=None, **overrides):
    """Add the flag of configuration field ``name`` (``--latent-dim`` for ``latent_dim``)
    with the field's help, check and default (``default``: what the flag leaves when it
    is not given -- by default nothing, so a config file's value or the field's default
    stays; ``shown``: the default the help names, if not the field's)."""
    _, f = TrainConfig.fields()[name]
    meta = f.metadata
    field_default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    shown = _shown(field_default, meta) if shown is None else shown
    kwargs = {"dest": name, "default": default, "help": f"{meta['help']} (default: {shown})"}
    if meta["kind"] == "bool":
        kwargs["action"] = argparse.BooleanOptionalAction
    else:
        kwargs |= {"type": _parse(name, meta), "metavar": name.upper()}
        if meta["choices"] is not None:
            kwargs |= {"choices": meta["choices"], "metavar": "{" + ",".join(meta["choices"]) + "}"}
    kwargs["help"] = kwargs["help"].replace("%", "%%")
    parser.add_argument("--" + name.replace("_", "-"), **(kwargs | overrides))


def add_train_flags(parser) -> None:
    """One flag per TrainConfig field, grouped by section."""
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(f"{SECTION_TITLES[section]} (TrainConfig.{section})")
        for f in dataclasses.fields(cls):
            config_flag(group, f.name)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m vaebook", description="Train and evaluate VAEs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    t = sub.add_parser(
        "train",
        help="train a VAE (flags and/or a config file), or resume one",
        description="Train a VAE. Flags override the values of --config; unset ones keep "
        "TrainConfig's defaults, shown with each flag.",
    )
    t.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="JSON object of TrainConfig fields, flat, as a run's config.json (default: none)",
    )
    t.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue a run from its last checkpoint; only "
        + ", ".join("--" + f.replace("_", "-") for f in RESUME_FLAGS)
        + " may change (default: none, a new run)",
    )
    add_train_flags(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "evaluate", help="ELBO, IWAE-k and log-likelihood estimate on a run's test split"
    )
    e.add_argument("run_dir", type=Path, help="the run folder")
    e.add_argument(
        "--k",
        type=positive_int,
        default=5000,
        help="importance samples for log p(x) (default: 5000)",
    )
    e.add_argument(
        "--iwae-k",
        dest="iwae_k",
        type=positive_int,
        default=50,
        help="samples of the IWAE bound, dividing --k (default: 50)",
    )
    e.add_argument(
        "--max-examples",
        dest="max_examples",
        type=positive_int,
        help="the first N test examples only (default: all)",
    )
    config_flag(e, "device", default="auto")
    config_flag(e, "seed", default=0, help="seeds the importance samples (default: 0)")
    config_flag(e, "progress", default=True)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser(
        "reproduce",
        help="retrain the runs the book uses (GPU when there is one) into vaebook/pretrained",
        description="Retrain committed runs from their recipes and record their metrics.",
    )
    r.add_argument(
        "--run", action="append", metavar="NAME", help="this run only, repeatable (default: all)"
    )
    r.add_argument("--list", action="store_true", help="list the runs and presets, train nothing")
    r.add_argument(
        "--preset", help="a recipe outside the book, e.g. mnist-burda (default: the book's runs)"
    )
    r.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="runs trained side by side, in worker processes (default: 1)",
    )
    config_flag(
        r, "data_dir", default=None, help="MNIST folder, for --preset mnist-burda (default: none)"
    )
    config_flag(r, "device", default="auto")
    config_flag(r, "epochs", default=None, help="epochs of every run (default: the recipe's)")
    config_flag(r, "runs_dir", default=None, shown="vaebook/pretrained; runs for presets")
    config_flag(r, "progress", default=True)
    r.set_defaults(func=cmd_reproduce)

    ls = sub.add_parser("list", help="known datasets and the runs in a folder")
    config_flag(ls, "runs_dir", default="runs")
    ls.set_defaults(func=cmd_list)
    return parser


# -- the commands ---------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .vae.run_folder import RunFolder
    from .vae.train import train

    not_config = ("command", "func", "config", "resume")
    flags = {k: v for k, v in vars(args).items() if k not in not_config}
    if args.resume is not None:
        extra = sorted(set(flags) - set(RESUME_FLAGS))
        if extra or args.config is not None:
            allowed = ", ".join("--" + f.replace("_", "-") for f in RESUME_FLAGS)
            refused = ", ".join("--" + f.replace("_", "-") for f in extra) or "--config"
            raise ConfigError(f"--resume takes only {allowed}, not {refused}")
        folder = RunFolder.open(args.resume)
        where = {"runs_dir": str(args.resume.parent), "run_name": args.resume.name}
        result = train(folder.config.replace(**flags, **where), resume=True)
    else:
        values = {}
        if args.config is not None:
            try:
                values = json.loads(args.config.read_text())
            except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
                raise ConfigError(
                    f"cannot read config file {args.config}: {str(e).splitlines()[0]}"
                ) from None
            if not isinstance(values, dict):
                raise ConfigError(f"config file {args.config} must hold a JSON object")
        result = train(TrainConfig.from_dict({**values, **flags}))
    keys = [k for k in result if k.startswith("test_")]
    print(f"run folder: {result['run_dir']}")
    print("  ".join(f"{k}={result[k]:.4f}" for k in keys))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .vae.devices import select_device
    from .vae.evaluate import evaluate
    from .vae.run_folder import RunFolder

    device = select_device(args.device)
    folder = RunFolder.open(args.run_dir)
    model, data = folder.load(device)
    x = data.test[: args.max_examples].to(device)  # (N, D)
    if args.k % args.iwae_k:
        raise ConfigError(f"--iwae-k ({args.iwae_k}) must divide --k ({args.k})")
    r = evaluate(model, x, k=args.k, iwae_ks=(args.iwae_k,), seed=args.seed, progress=args.progress)
    elbo, iwae, ll = r["elbo"], r[f"iwae_{args.iwae_k}"], r["log_likelihood"]
    consistent = elbo <= iwae + 1e-5 and iwae <= ll + 1e-5
    c = folder.config
    result = {
        "dataset": c.data.dataset,
        "binarization": c.data.binarization,
        **r,
        "consistent": consistent,
        "device": str(device),
    }
    folder.write_evaluation(result)
    print(f"{c.data.dataset} test split, {x.shape[0]} examples, nats per example:")
    recon, kl = r["reconstruction"], r["kl"]
    print(f"  ELBO          {elbo:10.4f}  (reconstruction {recon:.4f}, KL {kl:.4f})")
    print(f"  IWAE-{args.iwae_k:<8d} {iwae:10.4f}")
    print(f"  log p(x) est. {ll:10.4f} +- {r['log_likelihood_stderr']:.4f} (k={args.k})")
    print(f"  bits/dim      {r['bits_per_dim_log_likelihood']:10.4f} (of the estimate)")
    print(f"  active units  {r['active_units']}")
    print(
        f"  ELBO <= IWAE-{args.iwae_k} <= estimate: {'yes' if consistent else 'NO'}"
        f" (all three from the same {args.k} draws per example)"
    )
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .vae import pretrained as P

    if args.list:
        print("runs the book uses (vaebook/pretrained/<run>):")
        for name, spec in P.RUNS.items():
            print(f"  {name:32s} {spec.purpose}")
        for preset, runs in P.PRESETS.items():
            print(f"preset {preset}: {', '.join(runs)}")
        return 0
    if args.preset is not None:
        if args.preset not in P.PRESETS:
            known = ", ".join(P.PRESETS)
            raise P.PretrainedError(f"unknown preset {args.preset!r}; known: {known}")
        names, root = list(P.PRESETS[args.preset]), Path(args.runs_dir or "runs")
    else:
        names, root = args.run or list(P.RUNS), Path(args.runs_dir or P.PRETRAINED_DIR)
        unknown = [n for n in names if n not in P.RUNS]
        if unknown:
            raise P.PretrainedError(f"unknown run(s) {', '.join(unknown)}; see reproduce --list")
    options = {"device": args.device, "data_dir": args.data_dir, "epochs": args.epochs}
    results = P.reproduce(names, root=root, progress=args.progress, jobs=args.jobs, **options)
    print(f"{'run':32s} {'test ELBO':>10s} {'IWAE':>10s} {'log p(x)':>10s} {'AU':>4s}  published")
    for name, m in zip(names, results, strict=True):
        t = m["test"]
        iwae = max(
            (int(k[5:]) for k in t if k.startswith("iwae_") and k[5:].isdigit()), default=None
        )
        published = P.PUBLISHED.get(name)
        print(
            f"{name:32s} {t['elbo']:10.3f} "
            + (f"{t[f'iwae_{iwae}']:10.3f} " if iwae else f"{'':10s} ")
            + f"{t['log_likelihood']:10.3f} {t['active_units']:4d}  "
            + (f"{published:.2f} (Burda et al. 2016, log p(x))" if published else "")
        )
    print(f"written under {root}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .vae.checkpoint import CheckpointError
    from .vae.run_folder import RunFolder

    print("datasets:")
    for name, description in DATASETS.items():
        print(f"  {name:8s} {description}")
    runs_dir = Path(args.runs_dir)
    runs = sorted(p.parent for p in runs_dir.glob("*/config.json")) if runs_dir.is_dir() else []
    print(f"runs in {runs_dir}: {len(runs) if runs else 'none'}")
    for run in runs:
        try:
            folder = RunFolder.open(run)
        except (CheckpointError, ConfigError) as e:
            print(f"  {run.name:40s} (bad config.json: {e})")
            continue
        rows, c = folder.history(), folder.config
        done = rows[-1]["epoch"] if rows else 0
        elbo = f"test ELBO {rows[-1]['test_elbo']:.3f}" if rows else "no epochs yet"
        print(f"  {run.name:40s} {c.data.dataset:7s} epoch {done}/{c.optim.epochs}  {elbo}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .vae.checkpoint import CheckpointError
    from .vae.data import DatasetError
    from .vae.recipes import PretrainedError
    from .vae.train import TrainingDiverged

    try:
        return args.func(args)
    except (ConfigError, CheckpointError, DatasetError, PretrainedError) as e:
        sys.stderr.write(f"vaebook: error: {e}\n")
        return 2
    except TrainingDiverged as e:
        sys.stderr.write(f"vaebook: training stopped: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("vaebook: interrupted; the last checkpoint is intact\n")
        return 130
