"""The trained runs the book renders: their recipes, ``reproduce`` and a guarded ``load``.

Each run of :data:`RUNS` is a :class:`RunSpec`: the :class:`~vaebook.vae.config.TrainConfig`
values that train it and how it is evaluated. ``python -m vaebook reproduce`` retrains
them (on a CUDA GPU when there is one, else the CPU) and writes
``vaebook/pretrained/<run>/``::

    model.safetensors  the weights (safetensors: nothing is unpickled on load)
    config.json        the TrainConfig it was trained with
    metrics.json       train and test ELBO, reconstruction, KL, IWAE-k, the log-likelihood
                       estimate (each with its standard error), bits per dimension, active
                       units, KL per latent dimension -- evaluated on the CPU, seed 0
    history.jsonl      one line of training metrics per epoch
    provenance.json    device, torch and vaebook versions, seed, epochs, wall time, data set
                       and binarisation, and the SHA-256 of every other file

:func:`load` checks every file against those checksums and gives a one-line
:class:`PretrainedError` naming ``python -m vaebook reproduce --run NAME`` when a run is
missing or damaged. Evaluation runs on the CPU with a fixed seed, so the recorded test
metrics can be recomputed from the committed weights (``tests/test_pretrained.py``).

:data:`PRESETS` are recipes that are not part of the book: ``mnist-burda`` trains the
one-stochastic-layer setting of Burda et al. (2016) on a local copy of MNIST.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_run, load_weights, model_for, read_metrics_lines
from .config import ConfigError, TrainConfig
from .data import DataSplit, load_dataset
from .evaluate import evaluate
from .models import VAE

__all__ = [
    "PRETRAINED_DIR",
    "RunSpec",
    "RUNS",
    "PRESETS",
    "PUBLISHED",
    "PretrainedError",
    "PretrainedRun",
    "load",
    "reproduce",
    "TOLERANCE_REEVALUATE",
    "SPREAD_FACTOR",
    "seed_spread",
    "judge_retrained",
]

PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
FILES = ("model.safetensors", "config.json", "metrics.json", "history.jsonl")
#: recomputing a committed run's test metrics from its weights (same seed, CPU), nats
TOLERANCE_REEVALUATE = 1e-3
#: a run retrained elsewhere (another device, another seed stream) agrees with the committed
#: one when each test metric is within this many seed-to-seed spreads (:func:`seed_spread`)
SPREAD_FACTOR = 4.0
SPREAD_KEYS = ("elbo", "kl", "log_likelihood")


class PretrainedError(ValueError):
    """A committed run that is missing, damaged or unknown (the CLI exits with status 2)."""


@dataclass(frozen=True)
class RunSpec:
    """A trained run: the TrainConfig values of its recipe and how it is evaluated."""

    config: dict
    purpose: str
    k: int = 1000  # importance samples of the log-likelihood estimate
    iwae_ks: tuple[int, ...] = (10,)  # IWAE bounds recorded beside it (each divides k)
    train_examples: int | None = None  # evaluate the training set on its first N rows


def _digits(**values) -> dict:
    """The book's digits recipe: dynamically binarised 8x8 digits, Bernoulli decoder,
    Adam 1e-3, batch 100, one CPU thread (so a CPU retrain is reproducible)."""
    base = {"dataset": "digits", "binarize": "dynamic", "likelihood": "bernoulli"}
    return {**base, "batch_size": 100, "lr": 1e-3, "num_threads": 1, "seed": 0, **values}


def _sweep() -> dict[str, RunSpec]:
    """Chapter 13: beta x latent size x seed, latent sizes at beta = 1, and KL warm-up."""
    runs = {}
    for latent in (4, 16):
        for beta in (0.25, 0.5, 1.0, 2.0, 4.0):
            for seed in (0, 1):
                runs[f"digits-L{latent}-beta{beta:g}-seed{seed}"] = RunSpec(
                    _digits(hidden_dims=[64], latent_dim=latent, beta=beta, seed=seed, epochs=150),
                    f"rate-distortion sweep (latent {latent}, beta {beta:g}, seed {seed})",
                )
    for latent in (2, 8, 32):
        runs[f"digits-L{latent}-beta1-seed0"] = RunSpec(
            _digits(hidden_dims=[64], latent_dim=latent, epochs=150),
            f"latent size sweep at beta = 1 (latent {latent})",
        )
    for seed in (0, 1):
        if seed:
            runs[f"digits-L32-beta1-seed{seed}"] = RunSpec(
                _digits(hidden_dims=[64], latent_dim=32, epochs=150, seed=seed),
                "latent 32 without warm-up (second seed)",
            )
        runs[f"digits-L32-warmup-seed{seed}"] = RunSpec(
            _digits(hidden_dims=[64], latent_dim=32, epochs=150, kl_warmup_epochs=50, seed=seed),
            "latent 32 with KL warm-up over 50 epochs",
        )
    return runs


#: the runs the book's chapters load (Part II)
RUNS: dict[str, RunSpec] = {
    "digits-vae": RunSpec(
        _digits(hidden_dims=[128], latent_dim=8, epochs=300),
        "the chapter 10 VAE: learning curves, reconstructions, samples; chapter 11's bounds",
        k=5000,
        iwae_ks=(5, 50, 500),
    ),
    "digits-vae-2d": RunSpec(
        _digits(hidden_dims=[128], latent_dim=2, epochs=300),
        "a two-dimensional latent space to draw, coloured by digit",
        k=5000,
        iwae_ks=(50,),
    ),
    "digits-iwae50": RunSpec(
        _digits(hidden_dims=[128], latent_dim=8, epochs=300, train_k=50),
        "the chapter 10 architecture trained on the IWAE bound with k = 50",
        k=5000,
        iwae_ks=(5, 50, 500),
    ),
    "ppca-linear": RunSpec(
        {
            "dataset": "ppca",
            "model": "linear",
            "likelihood": "gaussian",
            "latent_dim": 2,
            "batch_size": 250,
            "lr": 1e-2,
            "lr_decay": 0.985,
            "epochs": 400,
            "num_threads": 1,
            "seed": 0,
        },
        "the linear VAE on probabilistic-PCA data (chapter 12)",
        k=1000,
        iwae_ks=(10,),
    ),
    **_sweep(),
}

#: recipes outside the book, for readers with the data (``reproduce --preset NAME``)
PRESETS: dict[str, dict[str, RunSpec]] = {
    "mnist-burda": {
        f"mnist-burda-{name}": RunSpec(
            {
                "dataset": "mnist",
                "binarize": "dynamic",
                "likelihood": "bernoulli",
                "hidden_dims": [200, 200],
                "latent_dim": 50,
                "activation": "tanh",
                "batch_size": 20,
                "lr": 1e-3,
                "epochs": 100,
                "train_k": train_k,
                "seed": 0,
            },
            f"Burda et al. (2016), one stochastic layer, {name} (784-200-200-50, tanh)",
            k=5000,
            iwae_ks=(50,),
        )
        for name, train_k in (("vae-k1", 1), ("iwae-k50", 50))
    }
}

#: published test log-likelihoods (nats) of Burda et al. (2016), Table 1, MNIST, one
#: stochastic layer, k = 5000 importance samples for the estimate
PUBLISHED = {"mnist-burda-vae-k1": -86.76, "mnist-burda-iwae-k50": -84.78}


def _spec(name: str) -> RunSpec:
    for table in (RUNS, *PRESETS.values()):
        if name in table:
            return table[name]
    raise PretrainedError(f"unknown run {name!r}; `python -m vaebook reproduce --list` lists them")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fix(name: str) -> str:
    return f"rebuild it with: python -m vaebook reproduce --run {name}"


@dataclass
class PretrainedRun:
    """A committed run, checked against its checksums: the model (eval mode, CPU), its
    configuration, recorded metrics, provenance and per-epoch history."""

    name: str
    model: VAE
    config: TrainConfig
    metrics: dict
    provenance: dict
    history: list[dict] = field(default_factory=list)

    def data(self) -> DataSplit:
        """The run's data split (the test set is the one its metrics were computed on)."""
        c = self.config
        return load_dataset(c.dataset, c.data_dir, c.binarize, c.seed, c.test_fraction)

    def evaluate(self, x: torch.Tensor | None = None, **kwargs) -> dict:
        """Re-evaluate on ``x`` (default: the test set) with the run's recorded settings."""
        spec = _spec(self.name)
        settings = {"k": spec.k, "iwae_ks": spec.iwae_ks, "seed": 0, **kwargs}
        return evaluate(self.model, self.data().test if x is None else x, **settings)


def load(name: str, root: str | Path = PRETRAINED_DIR) -> PretrainedRun:
    """The committed run ``name``; :class:`PretrainedError` (one line, naming the command that
    rebuilds it) if a file is missing or does not match its recorded checksum."""
    run_dir = Path(root) / name
    prov_path = run_dir / "provenance.json"
    if not prov_path.is_file():
        raise PretrainedError(f"pretrained run {name!r} is missing ({prov_path}); {_fix(name)}")
    try:
        provenance = json.loads(prov_path.read_text())
        checksums = provenance["sha256"]
    except (ValueError, KeyError, OSError) as e:
        raise PretrainedError(f"{prov_path} is unreadable ({e}); {_fix(name)}") from None
    for file in FILES:
        path = run_dir / file
        if not path.is_file():
            raise PretrainedError(f"pretrained run {name!r} lacks {file}; {_fix(name)}")
        if _sha256(path) != checksums.get(file):
            raise PretrainedError(
                f"{path} does not match its recorded checksum (corrupt or edited); {_fix(name)}"
            )
    try:
        config = TrainConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        model = model_for(config, metrics["data_dim"])
        weights, _ = load_weights(run_dir)
        model.load_state_dict(weights)
    except (ConfigError, CheckpointError, KeyError, ValueError, RuntimeError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PretrainedError(f"pretrained run {name!r}: {message}; {_fix(name)}") from None
    history = read_metrics_lines(run_dir / "history.jsonl")
    return PretrainedRun(name, model.eval(), config, metrics, provenance, history)


def reproduce(
    names: list[str],
    *,
    root: str | Path = PRETRAINED_DIR,
    device: str = "auto",
    data_dir: str | None = None,
    epochs: int | None = None,
    progress: bool = True,
) -> list[dict]:
    """Retrain each named run from its recipe (on ``device``), evaluate it on the CPU and
    replace ``root/<name>/`` atomically; returns each run's metrics."""
    from .train import train

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        spec = _spec(name)
        overrides = {"device": device, "progress": progress, "run_name": name}
        overrides |= {"data_dir": data_dir} if data_dir else {}
        overrides |= {"epochs": epochs} if epochs else {}
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.") as tmp:
            config = TrainConfig.from_dict({**spec.config, **overrides, "out_dir": tmp})
            train(config)
            run = Path(tmp) / name
            results.append(_write_run(name, spec, config, run, root))
    return results


def _write_run(name: str, spec: RunSpec, config: TrainConfig, run: Path, root: Path) -> dict:
    """Evaluate the freshly trained ``run`` on the CPU and write the committed layout."""
    metrics = evaluate_run(name, spec, config, run)
    out = root / f".{name}.new"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    shutil.copy(run / "model.safetensors", out / "model.safetensors")
    stored = {**dataclasses.asdict(config), "out_dir": "runs", "device": "auto", "progress": True}
    (out / "config.json").write_text(json.dumps(stored, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.copy(run / "metrics.jsonl", out / "history.jsonl")
    provenance = json.loads((run / "provenance.json").read_text())
    provenance |= {
        "run": name,
        "purpose": spec.purpose,
        "dataset": config.dataset,
        "command": f"python -m vaebook reproduce --run {name}",
        "sha256": {f: _sha256(out / f) for f in FILES},
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    final = root / name
    old = root / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    out.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return metrics


def evaluate_run(name: str, spec: RunSpec, config: TrainConfig, run: Path) -> dict:
    """The metrics a committed run records, of the trained run folder ``run``: its test and
    (first rows of the) training set, evaluated on the CPU with seed 0."""
    _, model, data = load_run(run, "cpu")
    test = evaluate(model, data.test, k=spec.k, iwae_ks=spec.iwae_ks, seed=0)
    train_x = data.train[: spec.train_examples]
    if config.binarize == "dynamic":  # scored on one fixed draw, like the test set
        draw = torch.Generator().manual_seed(data.info["test_binarization_seed"])
        train_x = torch.bernoulli(train_x, generator=draw)
    train = evaluate(model, train_x, k=min(spec.k, 1000), iwae_ks=(), seed=0)
    return {
        "run": name,
        "dataset": config.dataset,
        "binarization": config.binarize,
        "data_dim": data.data_dim,
        "test_binarization_seed": data.info.get("test_binarization_seed"),
        "evaluation": {"k": spec.k, "iwae_ks": list(spec.iwae_ks), "seed": 0, "device": "cpu"},
        "test": test,
        "train": train,
    }


# -- judging a run trained elsewhere ------------------------------------------------------
def _recipe_without(config: dict, keys: tuple[str, ...]) -> str:
    return json.dumps({k: v for k, v in sorted(config.items()) if k not in keys})


def seed_spread(name: str, root: str | Path = PRETRAINED_DIR) -> dict[str, float]:
    """The seed-to-seed spread of the recipe of run ``name``, per test metric of
    :data:`SPREAD_KEYS`: the root mean square of the difference between two committed runs
    whose recipes differ only in the seed (every such pair among the recipes that differ
    from this one in beta and KL warm-up alone, pooled). It is the typical difference
    between two runs of one recipe with different random streams, which is what a run
    trained on another device is. :class:`PretrainedError` if no such pair is committed."""
    family = _recipe_without(_spec(name).config, ("seed", "beta", "kl_warmup_epochs"))
    by_recipe: dict[str, list[str]] = {}
    for other, spec in RUNS.items():
        if _recipe_without(spec.config, ("seed", "beta", "kl_warmup_epochs")) == family:
            by_recipe.setdefault(_recipe_without(spec.config, ("seed",)), []).append(other)
    tests = {
        n: json.loads((Path(root) / n / "metrics.json").read_text())["test"]
        for names in by_recipe.values()
        for n in names
        if len(names) > 1
    }
    pairs = [
        (a, b) for names in by_recipe.values() for i, a in enumerate(names) for b in names[i + 1 :]
    ]
    if not pairs:
        raise PretrainedError(f"no two seeds of the recipe of {name!r} are committed")
    return {
        key: math.sqrt(sum((tests[a][key] - tests[b][key]) ** 2 for a, b in pairs) / len(pairs))
        for key in SPREAD_KEYS
    }


def judge_retrained(
    name: str, test_metrics: dict, root: str | Path = PRETRAINED_DIR
) -> list[tuple[str, float, float, float, bool]]:
    """Compare the test metrics of run ``name`` trained elsewhere (another device, another
    seed stream: not bitwise) with the committed ones: ``(key, committed, new, tolerance,
    within)`` per key of :data:`SPREAD_KEYS`, the tolerance being :data:`SPREAD_FACTOR`
    seed-to-seed spreads of the recipe (:func:`seed_spread`)."""
    committed = json.loads((Path(root) / name / "metrics.json").read_text())["test"]
    spread = seed_spread(name, root)
    rows = []
    for key in SPREAD_KEYS:
        tolerance = SPREAD_FACTOR * spread[key]
        new, old = test_metrics[key], committed[key]
        rows.append((key, old, new, tolerance, abs(new - old) <= tolerance))
    return rows
