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
from .vae.config import BINARIZATIONS, DATASETS, LIKELIHOODS, MODELS


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
    t.add_argument("--beta", type=float, default=S)
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

    ls = sub.add_parser("list", help="known datasets and the runs in a folder")
    ls.add_argument("--runs-dir", dest="runs_dir", type=Path, default=Path("runs"))
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .vae.checkpoint import load_config
    from .vae.config import ConfigError, TrainConfig
    from .vae.train import train

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume")}
    if args.resume is not None:
        extra = sorted(set(flags) - {"epochs", "progress", "num_threads"})
        if extra or args.config is not None:
            raise ConfigError(
                "--resume takes only --epochs/--no-progress/--threads, "
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
    import torch

    from .vae.checkpoint import atomic_write_json, load_run
    from .vae.config import ConfigError
    from .vae.objectives import estimate_log_likelihood
    from .vae.train import evaluate_elbo, select_device

    device = select_device(args.device)
    config, model, data = load_run(args.run_dir, device)
    x = data.test[: args.max_examples].to(device)  # (N, D)
    if args.k % args.iwae_k:
        raise ConfigError(f"--iwae-k ({args.iwae_k}) must divide --k ({args.k})")
    torch.manual_seed(args.seed)
    terms = evaluate_elbo(model, x, seed=args.seed)  # analytic-KL split of the ELBO
    ll = estimate_log_likelihood(
        model, x, k=args.k, bound_ks=(1, args.iwae_k), progress=args.progress
    )
    elbo, iwae = ll.bounds[1].mean().item(), ll.bounds[args.iwae_k].mean().item()
    result = {
        "examples": x.shape[0],
        "dataset": config.dataset,
        "binarization": config.binarize,
        "elbo": elbo,
        "reconstruction": terms["test_reconstruction"],
        "kl": terms["test_kl"],
        "active_units": terms["active_units"],
        f"iwae_{args.iwae_k}": iwae,
        "log_likelihood": ll.mean,
        "log_likelihood_stderr": ll.stderr,
        "log_likelihood_k": args.k,
        "consistent": elbo <= iwae + 1e-5 and iwae <= ll.mean + 1e-5,
        "device": str(device),
    }
    atomic_write_json(Path(args.run_dir) / "evaluation.json", result)
    print(f"{config.dataset} test split, {x.shape[0]} examples, nats per example:")
    print(
        f"  ELBO          {elbo:10.4f}  (reconstruction {terms['test_reconstruction']:.4f}, "
        f"KL {terms['test_kl']:.4f})"
    )
    print(f"  IWAE-{args.iwae_k:<8d} {iwae:10.4f}")
    print(f"  log p(x) est. {ll.mean:10.4f} +- {ll.stderr:.4f} (k={args.k})")
    print(f"  active units  {terms['active_units']}")
    print(
        f"  ELBO <= IWAE-{args.iwae_k} <= estimate: {'yes' if result['consistent'] else 'NO'}"
        f" (all three from the same {args.k} draws per example)"
    )
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
    from .vae.train import TrainingDiverged

    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "bench":
            from .bench import run_bench

            return run_bench(args)
        return cmd_list(args)
    except (ConfigError, CheckpointError, DatasetError) as e:
        sys.stderr.write(f"vaebook: error: {e}\n")
        return 2
    except TrainingDiverged as e:
        sys.stderr.write(f"vaebook: training stopped: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("vaebook: interrupted; the last checkpoint is intact\n")
        return 130
