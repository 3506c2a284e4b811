"""The committed runs (vaebook/pretrained): every one loads, its recorded test metrics are
recomputed from its weights, a damaged or missing run is refused in one line, and a run
retrained from its recipe on the CPU reproduces its metrics."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaebook.vae import pretrained as P

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("elbo", "reconstruction", "kl", "log_likelihood", "active_units")


def test_the_committed_runs_were_trained_on_one_kind_of_device():
    """All of them or none are retrained on a GPU: the book never mixes devices."""
    provenances = [
        json.loads((P.PRETRAINED_DIR / n / "provenance.json").read_text()) for n in P.RUNS
    ]
    devices = {p["device"].split(":")[0] for p in provenances}
    assert len(devices) == 1, devices
    names = {p.get("gpu_name") for p in provenances}
    assert len(names) == 1 and (names == {None}) == (devices == {"cpu"}), names


def test_every_run_the_book_uses_is_committed():
    on_disk = {p.name for p in P.PRETRAINED_DIR.iterdir() if p.is_dir() and p.name[0] != "."}
    assert on_disk == set(P.RUNS), (on_disk - set(P.RUNS), set(P.RUNS) - on_disk)
    total = sum(p.stat().st_size for p in P.PRETRAINED_DIR.rglob("*") if p.is_file())
    assert total < 8e6, f"committed runs take {total / 1e6:.1f} MB"


@pytest.mark.parametrize("name", sorted(P.RUNS))
def test_recorded_test_metrics_are_recomputed_from_the_weights(name):
    run = P.load(name)
    recorded = run.metrics["test"]
    again = run.evaluate()
    for key in (*KEYS, *(f"iwae_{k}" for k in P.RUNS[name].iwae_ks)):
        assert math.isclose(again[key], recorded[key], abs_tol=P.TOLERANCE_REEVALUATE), key
    assert recorded["elbo"] <= recorded["log_likelihood"] + 1e-6
    prov = run.provenance
    assert prov["run"] == name and prov["seed"] == run.config.run.seed
    assert prov["epochs"] == run.config.optim.epochs == len(run.history)
    assert prov["device"] in ("cpu", "cuda") and prov["device_name"]
    assert run.metrics["binarization"] == run.config.data.binarization


def copy_of(name, tmp_path):
    shutil.copytree(P.PRETRAINED_DIR / name, tmp_path / name)
    return tmp_path / name


def test_damaged_or_missing_runs_are_refused_in_one_line(tmp_path):
    name = "digits-L4-beta1-seed0"
    run = copy_of(name, tmp_path)
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (run / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(P.PretrainedError, match=f"checksum.*reproduce --run {name}"):
        P.load(name, root=tmp_path)
    (run / "model.safetensors").unlink()
    with pytest.raises(P.PretrainedError, match="lacks model.safetensors"):
        P.load(name, root=tmp_path)
    with pytest.raises(P.PretrainedError, match="missing.*reproduce --run nowhere"):
        P.load("nowhere", root=tmp_path)


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(tmp_path):
    """A forged weights file with a matching forged checksum is still only read by
    safetensors, which refuses it: nothing is unpickled."""
    name = "digits-L4-beta1-seed0"
    run = copy_of(name, tmp_path)
    marker = tmp_path / "pwned"
    payload = (
        b"\x80\x04\x95" + b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    )  # a pickle that would run a shell command if unpickled
    (run / "model.safetensors").write_bytes(payload)
    prov = json.loads((run / "provenance.json").read_text())
    prov["sha256"]["model.safetensors"] = P._sha256(run / "model.safetensors")
    (run / "provenance.json").write_text(json.dumps(prov))
    with pytest.raises(P.PretrainedError, match="reproduce --run"):
        P.load(name, root=tmp_path)
    assert not marker.exists()


def test_cli_error_for_a_missing_run_is_one_line(tmp_path):
    from vaebook.cli import main

    assert main(["reproduce", "--run", "no-such-run", "--runs-dir", str(tmp_path)]) == 2


def test_retraining_a_run_on_the_cpu_reproduces_its_metrics(tmp_path):
    name = "digits-L4-beta1-seed0"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaebook",
            "reproduce",
            "--run",
            name,
            "--runs-dir",
            str(tmp_path),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    fresh = json.loads((tmp_path / name / "metrics.json").read_text())["test"]
    for key, _, _, tolerance, within in P.judge_retrained(name, fresh):
        assert within, (key, tolerance)
    weights = load_file(str(tmp_path / name / "model.safetensors"))
    assert weights.keys() == load_file(str(P.PRETRAINED_DIR / name / "model.safetensors")).keys()


def test_a_run_trained_with_another_seed_stream_is_judged_by_the_seed_spread(tmp_path):
    """A run trained elsewhere (another device, another seed stream) is not bitwise the
    committed one: it is judged by the seed-to-seed spread of its recipe. Here the recipe of
    a committed run retrained on the CPU with another seed stands in for a GPU run; the
    same tolerance refuses a run of another recipe (beta 4 instead of 1)."""
    from vaebook.vae.config import TrainConfig
    from vaebook.vae.train import train

    name = "digits-L4-beta1-seed0"
    spec = P.RUNS[name]
    values = {**spec.config, "seed": 12345, "device": "cpu", "progress": False}
    config = TrainConfig.from_dict({**values, "runs_dir": str(tmp_path), "run_name": "x"})
    train(config)
    fresh = P.evaluate_run(name, spec, config, tmp_path / "x")["test"]
    spread = P.seed_spread(name)
    assert all(0 < spread[k] < 0.5 for k in P.SPREAD_KEYS), spread  # nats: a real spread
    verdicts = P.judge_retrained(name, fresh)
    assert all(within for *_, within in verdicts), verdicts
    assert any(new != old for _, old, new, _, _ in verdicts)  # not a bitwise copy
    other = P.load("digits-L4-beta4-seed0").metrics["test"]
    assert not all(within for *_, within in P.judge_retrained(name, other))


def test_reproduce_side_by_side_writes_what_one_at_a_time_writes(tmp_path, capsys):
    """--jobs 2 trains in two worker processes; each run is the same as when trained alone
    (CPU, one thread each: bitwise), and one progress display counts the runs."""
    from vaebook.cli import main

    names = ["digits-L4-beta1-seed0", "digits-L4-beta1-seed1"]
    for jobs in ("1", "2"):
        argv = ["reproduce", "--run", names[0], "--run", names[1], "--epochs", "1"]
        argv += ["--device", "cpu", "--jobs", jobs, "--runs-dir", str(tmp_path / jobs)]
        assert main(argv) == 0
        assert "runs: 100%" in capsys.readouterr().err  # the one bar, over the runs
    for name in names:
        one, two = (load_file(str(tmp_path / j / name / "model.safetensors")) for j in "12")
        assert all(torch.equal(one[k], two[k]) for k in one), name
        metrics = [json.loads((tmp_path / j / name / "metrics.json").read_text()) for j in "12"]
        assert metrics[0] == metrics[1]


def test_reproduce_list_names_every_run(capsys):
    from vaebook.cli import main

    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in P.RUNS) and "mnist-burda" in out


def test_mnist_burda_preset_on_a_tiny_generated_idx_folder(tmp_path, capsys):
    """The preset cannot run here on real MNIST (no training set); on a generated IDX
    folder it trains both runs, evaluates them and prints the published numbers beside."""
    import numpy as np

    from vaebook.cli import main

    rng = np.random.default_rng(0)
    for stem, n in (("train-images-idx3-ubyte", 40), ("t10k-images-idx3-ubyte", 8)):
        arr = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        (tmp_path / stem).write_bytes(header + arr.tobytes())
    code = main(
        [
            "reproduce",
            "--preset",
            "mnist-burda",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--runs-dir",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "-86.76" in out and "-84.78" in out and "Burda" in out
    for name in P.PRESETS["mnist-burda"]:
        metrics = json.loads((tmp_path / "runs" / name / "metrics.json").read_text())
        assert metrics["data_dim"] == 784 and metrics["test"]["log_likelihood_k"] == 5000
        assert (
            json.loads((tmp_path / "runs" / name / "config.json").read_text())["activation"]
            == "tanh"
        )
