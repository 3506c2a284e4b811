"""The trained runs the book renders: ``reproduce`` (train, evaluate, commit) and a guarded
``load``; their recipes are :mod:`vaebook.vae.recipes`.

``python -m vaebook reproduce`` retrains the runs of :data:`RUNS` (on a CUDA GPU when
there is one, else the CPU; ``--jobs N`` side by side) and writes
``vaebook/pretrained/<run>/``::

    model.safetensors  the weights (safetensors: nothing is unpickled on load)
    config.json        the TrainConfig it was trained with (flat, as a run folder's)
    metrics.json       train and test ELBO, reconstruction, KL, IWAE-k, the log-likelihood
                       estimate (each with its standard error), bits per dimension, active
                       units, KL per latent dimension -- evaluated on the CPU, seed 0
    history.jsonl      one line of training metrics per epoch
    provenance.json    device (and GPU facts), torch and vaebook versions, seed, epochs, wall
                       time, data set and binarization, and the SHA-256 of every other file

:func:`load` checks every file against those checksums and gives a one-line
:class:`PretrainedError` naming ``python -m vaebook reproduce --run NAME`` when a run is
missing or damaged. Evaluation runs on the CPU with a fixed seed, so the recorded test
metrics can be recomputed from the committed weights (``tests/test_pretrained.py``). A run
trained elsewhere (another device, another seed stream) is not bitwise the committed one:
:func:`judge_retrained` compares it within the seed-to-seed spread of its recipe.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import CheckpointError, read_json_lines
from .config import ConfigError, TrainConfig
from .data import DataSplit, load_dataset
from .evaluate import evaluate
from .models import VAE
from .recipes import PRESETS, PUBLISHED, RUNS, PretrainedError, RunSpec, spec_of
from .run_folder import RunFolder

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
    "evaluate_run",
    "TOLERANCE_REEVALUATE",
    "SPREAD_FACTOR",
    "SPREAD_KEYS",
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
        return load_dataset(self.config.data)

    def evaluate(self, x: torch.Tensor | None = None, **kwargs) -> dict:
        """Re-evaluate on ``x`` (default: the test set) with the run's recorded settings."""
        spec = spec_of(self.name)
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
        folder = RunFolder.open(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        model = folder.load_model(metrics["data_dim"])
    except (ConfigError, CheckpointError, KeyError, ValueError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PretrainedError(f"pretrained run {name!r}: {message}; {_fix(name)}") from None
    history = read_json_lines(run_dir / "history.jsonl")
    return PretrainedRun(name, model, folder.config, metrics, provenance, history)


# -- reproduce: train, evaluate, commit ---------------------------------------------------
def reproduce(
    names: list[str],
    *,
    root: str | Path = PRETRAINED_DIR,
    device: str = "auto",
    data_dir: str | None = None,
    epochs: int | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> list[dict]:
    """Retrain each named run from its recipe (on ``device``), evaluate it on the CPU and
    replace ``root/<name>/`` atomically; returns each run's metrics, in the order of
    ``names``. ``jobs > 1`` trains that many runs side by side in worker processes (on the
    CPU each uses the threads its recipe asks for; on a GPU they share it). One progress
    display: the runs done, or with a single run its training steps."""
    for name in names:
        spec_of(name)  # every name known before anything trains
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    options = {"device": device, "data_dir": data_dir, "epochs": epochs}
    if len(names) == 1:
        return [reproduce_one(names[0], root, progress=progress, **options)]
    from tqdm import tqdm

    bar = tqdm(total=len(names), desc="runs", unit="run", disable=not progress)
    results: dict[str, dict] = {}
    try:
        if jobs == 1:
            for name in names:
                results[name] = reproduce_one(name, root, progress=False, **options)
                bar.set_postfix_str(name, refresh=False)
                bar.update(1)
        else:
            import concurrent.futures
            import multiprocessing

            context = multiprocessing.get_context("spawn")  # no fork after torch/CUDA start
            with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
                futures = {
                    pool.submit(reproduce_one, name, root, progress=False, **options): name
                    for name in names
                }
                for future in concurrent.futures.as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.set_postfix_str(futures[future], refresh=False)
                    bar.update(1)
    finally:
        bar.close()
    return [results[name] for name in names]


def reproduce_one(
    name: str,
    root: Path,
    *,
    device: str = "auto",
    data_dir: str | None = None,
    epochs: int | None = None,
    progress: bool = False,
) -> dict:
    """Train run ``name`` from its recipe in a temporary folder under ``root``, evaluate it
    and write ``root/<name>/``; returns its metrics."""
    from .train import train

    spec = spec_of(name)
    overrides = {"device": device, "progress": progress, "run_name": name}
    overrides |= {"data_dir": data_dir} if data_dir else {}
    overrides |= {"epochs": epochs} if epochs else {}
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.") as tmp:
        config = TrainConfig.from_dict({**spec.config, **overrides, "runs_dir": tmp})
        train(config)
        return _write_run(name, spec, config, Path(tmp) / name, Path(root))


def _write_run(name: str, spec: RunSpec, config: TrainConfig, run: Path, root: Path) -> dict:
    """Evaluate the freshly trained ``run`` on the CPU and write the committed layout."""
    metrics = evaluate_run(name, spec, config, run)
    out = root / f".{name}.new"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    shutil.copy(run / RunFolder.WEIGHTS, out / "model.safetensors")
    stored = config.replace(runs_dir="runs", device="auto", progress=True).to_dict()
    (out / "config.json").write_text(json.dumps(stored, indent=2) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.copy(run / RunFolder.HISTORY, out / "history.jsonl")
    provenance = json.loads((run / RunFolder.PROVENANCE).read_text())
    provenance |= {
        "run": name,
        "purpose": spec.purpose,
        "dataset": config.data.dataset,
        "command": f"python -m vaebook reproduce --run {name}",
        "sha256": {f: _sha256(out / f) for f in FILES},
    }
    (out / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    final, old = root / name, root / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    out.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return metrics


def evaluate_run(name: str, spec: RunSpec, config: TrainConfig, run: Path) -> dict:
    """The metrics a committed run records, of the trained run folder ``run``: its test and
    (first rows of the) training set, evaluated on the CPU with seed 0."""
    model, data = RunFolder.open(run).load("cpu")
    test = evaluate(model, data.test, k=spec.k, iwae_ks=spec.iwae_ks, seed=0)
    train_x = data.train[: spec.train_examples]
    if config.data.binarization == "dynamic":  # scored on one fixed draw, like the test set
        draw = torch.Generator().manual_seed(data.info["test_binarization_seed"])
        train_x = torch.bernoulli(train_x, generator=draw)
    train = evaluate(model, train_x, k=min(spec.k, 1000), iwae_ks=(), seed=0)
    return {
        "run": name,
        "dataset": config.data.dataset,
        "binarization": config.data.binarization,
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
    varied = ("seed", "beta", "kl_warmup_epochs")
    family = _recipe_without(spec_of(name).config, varied)
    by_recipe: dict[str, list[str]] = {}
    for other, spec in RUNS.items():
        if _recipe_without(spec.config, varied) == family:
            by_recipe.setdefault(_recipe_without(spec.config, ("seed",)), []).append(other)
    pairs = [
        (a, b) for runs in by_recipe.values() for i, a in enumerate(runs) for b in runs[i + 1 :]
    ]
    if not pairs:
        raise PretrainedError(f"no two seeds of the recipe of {name!r} are committed")
    tests = {
        n: json.loads((Path(root) / n / "metrics.json").read_text())["test"]
        for pair in pairs
        for n in pair
    }
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
