"""Trainer: run folder layout, bitwise resume (in-process and after SIGKILL), atomic files,
NaN guard."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vaebook
from vaebook.vae import train as train_module
from vaebook.vae.checkpoint import CheckpointError, load_checkpoint
from vaebook.vae.config import ConfigError, DataConfig, OptimConfig, TrainConfig, beta_at, lr_at
from vaebook.vae.data import load_dataset
from vaebook.vae.train import TrainingDiverged, train

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path, **overrides):
    base = dict(
        dataset="digits",
        epochs=2,
        batch_size=256,
        hidden_dims=[32],
        latent_dim=4,
        runs_dir=str(tmp_path),
        run_name="run",
        progress=False,
        threads=1,
        seed=3,
        device="cpu",
    )
    return TrainConfig.from_dict({**base, **overrides})


def checkpoint_of(run_dir):
    return load_checkpoint(Path(run_dir) / "checkpoint.safetensors")


def comparable(rows):
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]


def metrics_rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_run_folder_layout_and_provenance(tmp_path):
    result = train(config(tmp_path, binarization="dynamic"))
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert names == {
        "config.json",
        "checkpoint.safetensors",
        "model.safetensors",
        "metrics.jsonl",
        "metrics.json",
        "provenance.json",
    }
    assert [r["epoch"] for r in metrics_rows(run)] == [1, 2]
    assert all(r["binarization"] == "dynamic" for r in metrics_rows(run))
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["device"] == "cpu" and prov["seed"] == 3 and prov["epochs"] == 2
    gpu_facts = ("gpu_name", "cuda_version", "gpu_driver_version", "tf32")
    assert all(prov[k] is None for k in gpu_facts)  # recorded, and None on the CPU
    assert (
        prov["vaebook_version"] == vaebook.__version__
        and prov["torch_version"] == torch.__version__
    )
    final = json.loads((run / "metrics.json").read_text())
    assert final["binarization"] == "dynamic" and final["epoch"] == 2
    assert (
        final["test_elbo"] <= final["test_iwae_50"] + 0.05
    )  # IWAE-50 is the tighter bound (up to noise)
    assert json.loads((run / "config.json").read_text())["hidden_dims"] == [32]
    assert result["run_dir"] == str(run)
    assert not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_training_improves_the_elbo(tmp_path):
    train(config(tmp_path, epochs=6, batch_size=64))
    rows = metrics_rows(tmp_path / "run")
    assert rows[-1]["test_elbo"] > rows[0]["test_elbo"] + 3  # nats per example


def test_resume_is_bitwise_identical_to_uninterrupted(tmp_path):
    """With a decaying step size and a KL warm-up: both are functions of the epoch, so the
    resumed run continues them exactly."""
    schedule = {"lr_decay": 0.8, "kl_warmup_epochs": 3, "binarization": "dynamic"}
    train(config(tmp_path / "a", epochs=4, **schedule))
    train(config(tmp_path / "b", epochs=2, **schedule))
    train(config(tmp_path / "b", epochs=4, **schedule), resume=True)
    wa, wb = (
        load_file(str(tmp_path / "a/run/model.safetensors")),
        load_file(str(tmp_path / "b/run/model.safetensors")),
    )
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert comparable(metrics_rows(tmp_path / "a/run")) == comparable(
        metrics_rows(tmp_path / "b/run")
    )
    _, sa = checkpoint_of(tmp_path / "a/run")
    _, sb = checkpoint_of(tmp_path / "b/run")
    assert torch.equal(sa["torch_rng"], sb["torch_rng"]) and torch.equal(
        sa["batch_generator"], sb["batch_generator"]
    )
    assert json.loads((tmp_path / "b/run/provenance.json").read_text())["resumed_from_epoch"] == 2
    rows = metrics_rows(tmp_path / "b/run")
    assert [r["beta"] for r in rows] == [pytest.approx(e / 3) for e in (1, 2)] + [1.0, 1.0]
    assert sa["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.8**3)


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    args = [
        "--dataset",
        "digits",
        "--epochs",
        "15",
        "--batch-size",
        "256",
        "--hidden-dims",
        "32",
        "--latent-dim",
        "4",
        "--seed",
        "3",
        "--threads",
        "1",
        "--no-progress",
        "--runs-dir",
        str(tmp_path / "k"),
        "--run-name",
        "run",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vaebook", "train", *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    weights = tmp_path / "k/run/model.safetensors"
    deadline = time.time() + 60
    checkpoint = tmp_path / "k/run/checkpoint.safetensors"
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    _, state = checkpoint_of(tmp_path / "k/run")
    assert 1 <= state["epoch"] < 15
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaebook",
            "train",
            "--resume",
            str(tmp_path / "k/run"),
            "--no-progress",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    train(config(tmp_path / "u", epochs=15))
    wk, wu = load_file(str(weights)), load_file(str(tmp_path / "u/run/model.safetensors"))
    for k in wu:
        assert torch.equal(wk[k], wu[k]), k
    assert comparable(metrics_rows(tmp_path / "k/run")) == comparable(
        metrics_rows(tmp_path / "u/run")
    )


def test_truncated_or_foreign_checkpoint_is_refused(tmp_path):
    train(config(tmp_path, epochs=1))
    run = tmp_path / "run"
    data = (run / "checkpoint.safetensors").read_bytes()
    (run / "checkpoint.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        train(config(tmp_path, epochs=2), resume=True)
    (run / "checkpoint.safetensors").write_bytes((run / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="not a vaebook checkpoint"):
        checkpoint_of(run)


def _train_in_child(cfg):  # run in a forked process that the test kills
    train(cfg, resume=(Path(cfg.run.runs_dir) / cfg.run.run_name / "config.json").exists())


def test_random_kills_never_leave_a_run_that_cannot_be_resumed(tmp_path):
    """Kill a tiny run at random instants, resume after each kill, and finish: the metrics
    and weights equal those of an uninterrupted run (a forked child, so no interpreter
    start-up per kill)."""
    import multiprocessing
    import random

    cfg = config(tmp_path / "k", epochs=150, batch_size=512, hidden_dims=[16], latent_dim=2)
    load_dataset(DataConfig())  # import scikit-learn and torch's optimiser machinery here, once,
    train_module.make_optimizer(torch.nn.Linear(1, 1), 1e-3)  # not in every forked child
    ctx = multiprocessing.get_context("fork")
    rng, kills = random.Random(0), 0
    deadline = time.time() + 40
    while kills < 30 and time.time() < deadline:
        child = ctx.Process(target=_train_in_child, args=(cfg,))
        child.start()
        child.join(timeout=rng.uniform(0.02, 0.35))
        if child.exitcode is not None:  # finished before the kill: the run is complete
            assert child.exitcode == 0
            break
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        kills += 1
    assert kills >= 5, "too few kills landed to test anything"
    final = train(cfg, resume=True)  # completes (or confirms) the run
    reference = train(
        config(tmp_path / "u", epochs=150, batch_size=512, hidden_dims=[16], latent_dim=2)
    )
    assert comparable(metrics_rows(tmp_path / "k/run")) == comparable(
        metrics_rows(tmp_path / "u/run")
    )
    wk = load_file(str(tmp_path / "k/run/model.safetensors"))
    wu = load_file(str(tmp_path / "u/run/model.safetensors"))
    assert all(torch.equal(wk[k], wu[k]) for k in wu)
    assert final["test_elbo"] == reference["test_elbo"]
    assert not list((tmp_path / "k/run").glob(".*.tmp"))


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path):
    cfg = config(tmp_path, epochs=2)
    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    (run / "metrics.jsonl").write_text("")
    resumed = train(cfg, resume=True)
    fresh = train(config(tmp_path / "fresh", epochs=2))
    assert resumed["test_elbo"] == fresh["test_elbo"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    from vaebook.vae import checkpoint

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        checkpoint.atomic_write_bytes(tmp_path / "x.bin", b"data" * 1000)
    assert list(tmp_path.iterdir()) == []


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = train_module.elbo_terms
    calls = {"n": 0}

    def poisoned(model, x, beta=1.0, analytic_kl=True, free_bits=0.0):
        calls["n"] += 1
        terms = real(model, x, beta, analytic_kl, free_bits)
        if calls["n"] > 6:  # epoch 1 has 6 steps of 256; epoch 2 goes bad
            terms.reconstruction = terms.reconstruction * float("nan")
        return terms

    monkeypatch.setattr(train_module, "elbo_terms", poisoned)
    with pytest.raises(TrainingDiverged, match="nan.*epoch 2.*last good checkpoint"):
        train(config(tmp_path, epochs=3, progress_every=2))
    weights, state = checkpoint_of(tmp_path / "run")
    assert state["epoch"] == 1
    assert all(torch.isfinite(w).all() for w in weights.values())
    assert [r["epoch"] for r in metrics_rows(tmp_path / "run")] == [1]


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        TrainConfig.from_dict({"epochs": 2, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match="epochs"):
        train(config(tmp_path, epochs=0))
    with pytest.raises(ConfigError, match="larger than the training set"):
        train(config(tmp_path, batch_size=5000))
    train(config(tmp_path, epochs=1))
    with pytest.raises(ConfigError, match="exists"):
        train(config(tmp_path, epochs=1))


def test_linear_model_on_ppca_through_the_trainer(tmp_path):
    train(
        config(
            tmp_path,
            dataset="ppca",
            architecture="linear",
            likelihood="gaussian",
            hidden_dims=None,
            latent_dim=2,
            epochs=3,
            batch_size=500,
            lr=0.01,
        )
    )
    rows = metrics_rows(tmp_path / "run")
    assert rows[-1]["test_elbo"] > rows[0]["test_elbo"]


@pytest.mark.parametrize(
    "key, value",
    [
        ("hidden_dims", [1, 2, "3"]),
        ("hidden_dims", 0),
        ("hidden_dims", "foo"),
        ("hidden_dims", [-5]),
        ("hidden_dims", 400),
        ("hidden_dims", []),
        ("latent_dim", "x"),
        ("decoder_std", -1),
        ("seed", "zero"),
        ("beta", "x"),
        ("beta", float("nan")),
        ("threads", -3),
        ("lr", float("inf")),
        ("epochs", True),
        ("analytic_kl", "yes"),
        ("run_name", "../../escape"),
        ("run_name", "a/b"),
        ("dataset", "cifar"),
        ("test_fraction", 1.5),
        ("binarization", "sometimes"),
        ("architecture", "conv"),
    ],
)
def test_config_values_of_the_wrong_type_or_range_are_refused(key, value):
    with pytest.raises(ConfigError, match=key):
        TrainConfig.from_dict({key: value})


def test_config_sections_round_trip_and_one_name_per_field():
    """The four sections hold every field once; config.json's flat mapping round-trips."""
    from vaebook.vae.config import SECTIONS

    names = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names)) == len(TrainConfig().to_dict())
    c = TrainConfig.from_dict({"latent_dim": 3, "beta": 0.5, "binarization": "static"})
    assert (c.model.latent_dim, c.optim.beta, c.data.binarization) == (3, 0.5, "static")
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="linear VAE"):
        c.replace(architecture="linear")


def test_schedules_are_functions_of_the_epoch():
    o = OptimConfig(lr=0.1, lr_decay=0.5, beta=2.0, kl_warmup_epochs=4)
    assert [lr_at(o, e) for e in (1, 2, 3)] == [0.1, 0.05, 0.025]
    assert [beta_at(o, e) for e in (1, 2, 4, 9)] == [0.5, 1.0, 2.0, 2.0]
    assert beta_at(OptimConfig(beta=0.3), 1) == 0.3


def snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_resuming_on_another_kind_of_device_is_refused_before_anything_is_touched(tmp_path):
    """A checkpoint records the kind of device it was made on; resuming elsewhere is refused
    with a command the CLI accepts, and the run folder is left exactly as it was (here a CPU
    checkpoint relabelled as made on CUDA stands in for a GPU run; tests/test_cuda.py does it
    for real)."""
    from safetensors import safe_open
    from safetensors.torch import save

    train(config(tmp_path, epochs=1))
    run = tmp_path / "run"
    path = run / "checkpoint.safetensors"
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    assert metadata["device_type"] == "cpu"
    path.write_bytes(save(load_file(str(path)), metadata={**metadata, "device_type": "cuda"}))
    before = snapshot(run)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
    for extra in ([], ["--device", "cpu"]):
        result = subprocess.run(
            [sys.executable, "-m", "vaebook", "train", "--resume", str(run), "--epochs", "2"]
            + extra,
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "made on cuda" in lines[0], result.stderr
        advice = lines[0].split("`")[1]  # the command it suggests ...
        assert advice.startswith("python -m vaebook train --resume")
        from vaebook.cli import build_parser

        build_parser().parse_args(advice.split()[3:])  # ... is one the CLI accepts
        assert snapshot(run) == before
