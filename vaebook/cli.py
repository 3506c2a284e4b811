"""Command line: ``python -m vaebook {train,evaluate,bench,list}``.

Bad input (unknown dataset, missing MNIST folder, non-positive numbers, batch
larger than the data, unreadable checkpoint, unknown config keys) prints one
line ``vaebook: error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# vaebook.vae.config imports no torch, so argument errors come back at once.
from .vae.config import ACTIVATIONS, BINARIZATIONS, DATASETS, LIKELIHOODS, MODELS


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr, exit status 2."""

    def error(self, message: str):  # noqa: D102 -- argparse API
        sys.stderr.write(f"vaebook: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return values


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=["synthetic", "digits", "mnist"],
        default="synthetic",
        help="784-dim data: synthetic uniform [0,1] (default), digits upsampled to 28x28, or MNIST",
    )
    p.add_argument("--data-dir", dest="data_dir", help="MNIST folder (dataset mnist)")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=200,
        help="timed optimisation steps per contender and round",
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="alternating rounds; the best round is reported",
    )
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=128)
    p.add_argument(
        "--device",
        "--devices",
        dest="device",
        default="auto",
        help="cpu, cuda, or a comma list (cpu,cuda); auto (default) = cpu, and cuda if present",
    )
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's)")
    p.add_argument("--ll-k", dest="ll_k", type=positive_int, default=5000)
    p.add_argument("--ll-examples", dest="ll_examples", type=positive_int, default=1000)
    p.add_argument(
        "--ll-loop-examples",
        dest="ll_loop_examples",
        type=positive_int,
        default=20,
        help="examples the per-example loops run on (their time is scaled to --ll-examples)",
    )
    p.add_argument(
        "--skip-ll", dest="skip_ll", action="store_true", help="only the training throughput"
    )
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="python -m vaebook", description="Train and evaluate VAEs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    t = sub.add_parser(
        "train",
        help="train a VAE (config file and/or flags)",
        description="Train a VAE. Flags override values from --config; defaults are TrainConfig's.",
    )
    S = argparse.SUPPRESS  # flags not given leave the config file's (or the default) value
    t.add_argument("--config", type=Path, help="JSON file with TrainConfig keys")
    t.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    t.add_argument("--dataset", choices=list(DATASETS), default=S)
    t.add_argument(
        "--data-dir",
        dest="data_dir",
        default=S,
        help="MNIST: the folder of IDX files; file: the .npy/.npz array",
    )
    t.add_argument("--binarize", choices=BINARIZATIONS, default=S)
    t.add_argument("--model", choices=MODELS, default=S)
    t.add_argument("--likelihood", choices=LIKELIHOODS, default=S)
    t.add_argument(
        "--hidden-dims", dest="hidden_dims", type=int_list, default=S, help="e.g. 400 or 256,128"
    )
    t.add_argument("--latent-dim", dest="latent_dim", type=positive_int, default=S)
    t.add_argument("--decoder-std", dest="decoder_std", type=positive_float, default=S)
    t.add_argument("--epochs", type=positive_int, default=S)
    t.add_argument("--batch-size", dest="batch_size", type=positive_int, default=S)
    t.add_argument("--lr", type=positive_float, default=S)
    t.add_argument(
        "--lr-decay", dest="lr_decay", type=positive_float, default=S, help="per-epoch factor"
    )
    t.add_argument("--beta", type=float, default=S)
    t.add_argument(
        "--kl-warmup-epochs",
        dest="kl_warmup_epochs",
        type=int,
        default=S,
        help="raise beta linearly from 0 over this many epochs",
    )
    t.add_argument(
        "--train-k",
        dest="train_k",
        type=positive_int,
        default=S,
        help="train the IWAE bound with this many samples (1: the ELBO)",
    )
    t.add_argument("--activation", choices=ACTIVATIONS, default=S)
    t.add_argument(
        "--mc-kl", dest="analytic_kl", action="store_false", default=S, help="Monte Carlo KL"
    )
    t.add_argument("--seed", type=int, default=S)
    t.add_argument("--device", default=S, help="auto (default), cpu, cuda, mps")
    t.add_argument("--bf16", action="store_true", default=S, help="bf16 autocast (CUDA only)")
    t.add_argument("--compile", action="store_true", default=S, help="torch.compile the loss")
    t.add_argument("--threads", dest="num_threads", type=positive_int, default=S)
    t.add_argument("--checkpoint-every", dest="checkpoint_every", type=positive_int, default=S)
    t.add_argument(
        "--out-dir", dest="out_dir", default=S, help="parent of run folders (default runs)"
    )
    t.add_argument("--run-name", dest="run_name", default=S)
    t.add_argument("--no-progress", dest="progress", action="store_false", default=S)

    e = sub.add_parser(
        "evaluate", help="ELBO, IWAE-k and log-likelihood estimate on a run's test split"
    )
    e.add_argument("run_dir", type=Path)
    e.add_argument(
        "--k",
        type=positive_int,
        default=5000,
        help="importance samples for log p(x) (default 5000)",
    )
    e.add_argument(
        "--iwae-k",
        dest="iwae_k",
        type=positive_int,
        default=50,
        help="samples for the IWAE bound (must divide --k)",
    )
    e.add_argument(
        "--max-examples", dest="max_examples", type=positive_int, help="first N test examples only"
    )
    e.add_argument("--device", default="auto")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--no-progress", dest="progress", action="store_false")

    b = sub.add_parser(
        "bench", help="throughput vs the classic PyTorch VAE loop; log p(x) estimate timing"
    )
    add_bench_arguments(b)

    r = sub.add_parser(
        "reproduce",
        help="retrain the runs the book uses (GPU when there is one) into vaebook/pretrained",
        description="Retrain committed runs from their recipes and record their metrics.",
    )
    r.add_argument("--run", action="append", metavar="NAME", help="this run only (repeatable)")
    r.add_argument("--list", action="store_true", help="list the runs and presets, train nothing")
    r.add_argument(
        "--preset", help="a recipe outside the book, e.g. mnist-burda (needs --data-dir)"
    )
    r.add_argument("--data-dir", dest="data_dir", help="MNIST folder, for --preset mnist-burda")
    r.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    r.add_argument("--epochs", type=positive_int, help="override the recipe's epochs")
    r.add_argument(
        "--out-dir",
        dest="out_dir",
        type=Path,
        help="where run folders go (default: vaebook/pretrained; runs/ for presets)",
    )
    r.add_argument("--no-progress", dest="progress", action="store_false")

    ls = sub.add_parser("list", help="known datasets and the runs in a folder")
    ls.add_argument("--runs-dir", dest="runs_dir", type=Path, default=Path("runs"))
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .vae.checkpoint import load_config
    from .vae.config import ConfigError, TrainConfig
    from .vae.train import train

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    if args.resume is not None:
        extra = sorted(set(flags) - {"epochs", "progress", "num_threads", "device"})
        if extra or args.config is not None:
            raise ConfigError(
                "--resume takes only --epochs/--no-progress/--threads/--device, "
                f"not {', '.join(extra) or '--config'}"
            )
        config = load_config(args.resume)
        values = {
            **vars(config),
            **flags,
            "out_dir": str(args.resume.parent),
            "run_name": args.resume.name,
        }
        result = train(TrainConfig.from_dict(values), resume=True)
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
        try:
            config = TrainConfig.from_dict({**values, **flags})
        except TypeError as e:
            raise ConfigError(f"bad config: {e}") from None
        result = train(config)
    keys = [k for k in result if k.startswith("test_")]
    print(f"run folder: {result['run_dir']}")
    print("  ".join(f"{k}={result[k]:.4f}" for k in keys))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .vae.checkpoint import atomic_write_json, load_run
    from .vae.config import ConfigError
    from .vae.evaluate import evaluate
    from .vae.train import select_device

    device = select_device(args.device)
    config, model, data = load_run(args.run_dir, device)
    x = data.test[: args.max_examples].to(device)  # (N, D)
    if args.k % args.iwae_k:
        raise ConfigError(f"--iwae-k ({args.iwae_k}) must divide --k ({args.k})")
    r = evaluate(model, x, k=args.k, iwae_ks=(args.iwae_k,), seed=args.seed, progress=args.progress)
    elbo, iwae, ll = r["elbo"], r[f"iwae_{args.iwae_k}"], r["log_likelihood"]
    consistent = elbo <= iwae + 1e-5 and iwae <= ll + 1e-5
    result = {
        "dataset": config.dataset,
        "binarization": config.binarize,
        **r,
        "consistent": consistent,
        "device": str(device),
    }
    atomic_write_json(Path(args.run_dir) / "evaluation.json", result)
    print(f"{config.dataset} test split, {x.shape[0]} examples, nats per example:")
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
            raise P.PretrainedError(
                f"unknown preset {args.preset!r}; known: {', '.join(P.PRESETS)}"
            )
        names, root = list(P.PRESETS[args.preset]), args.out_dir or Path("runs")
    else:
        names, root = args.run or list(P.RUNS), args.out_dir or P.PRETRAINED_DIR
        unknown = [n for n in names if n not in P.RUNS]
        if unknown:
            raise P.PretrainedError(f"unknown run(s) {', '.join(unknown)}; see reproduce --list")
    from tqdm import tqdm

    results = []
    for name in tqdm(names, desc="runs", unit="run", disable=not args.progress or len(names) < 2):
        results += P.reproduce(
            [name],
            root=root,
            device=args.device,
            data_dir=args.data_dir,
            epochs=args.epochs,
            progress=args.progress,
        )
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
    from .vae.checkpoint import CheckpointError, load_config, read_metrics_lines
    from .vae.config import ConfigError

    print("datasets:")
    for name, description in DATASETS.items():
        print(f"  {name:8s} {description}")
    runs = (
        sorted(p.parent for p in args.runs_dir.glob("*/config.json"))
        if args.runs_dir.is_dir()
        else []
    )
    print(f"runs in {args.runs_dir}: {len(runs) if runs else 'none'}")
    for run in runs:
        try:
            config = load_config(run)
        except (CheckpointError, ConfigError) as e:
            print(f"  {run.name:40s} (bad config.json: {e})")
            continue

        rows = read_metrics_lines(run / "metrics.jsonl")
        done = rows[-1]["epoch"] if rows else 0
        elbo = f"test ELBO {rows[-1]['test_elbo']:.3f}" if rows else "no epochs yet"
        print(f"  {run.name:40s} {config.dataset:7s} epoch {done}/{config.epochs}  {elbo}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .vae.checkpoint import CheckpointError
    from .vae.config import ConfigError
    from .vae.data import DatasetError
    from .vae.pretrained import PretrainedError
    from .vae.train import TrainingDiverged

    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
        if args.command == "bench":
            from .bench import run_bench

            return run_bench(args)
        return cmd_list(args)
    except (ConfigError, CheckpointError, DatasetError, PretrainedError) as e:
        sys.stderr.write(f"vaebook: error: {e}\n")
        return 2
    except TrainingDiverged as e:
        sys.stderr.write(f"vaebook: training stopped: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("vaebook: interrupted; the last checkpoint is intact\n")
        return 130
