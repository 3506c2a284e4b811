"""The benchmark tool (tools/bench.py): its one timing harness, the matmul floor, the noise
verdict, the per-example loops against torch.distributions, its data (train's data set
names and loader) and a small end-to-end run. No timing is asserted."""

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("vaebook_tools_bench", ROOT / "tools/bench.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench
_spec.loader.exec_module(bench)


def test_bench_runs_small(capsys, tmp_path):
    """The printout has the fields bench promises, and the JSON file its figures."""
    argv = ["--steps", "3", "--rounds", "1", "--ll-k", "20", "--ll-examples", "10"]
    out_json = tmp_path / "bench.json"
    argv += ["--ll-loop-examples", "10", "--device", "cpu", "--json", str(out_json)]
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    for field in (
        "examples/s",
        "classic ",
        "plain ",
        "vaebook ",
        "ratio vaebook / plain:",
        "ratio vaebook / classic:",
        "matmul floor:",
        "noise: matmul probe",
        "noise verdict:",
        "vectorised",
        "per-example loop, explicit densities",
        "EXTRAPOLATED: timed on 1 of 10 examples",  # the one-sample-at-a-time loop
    ):
        assert field in out, field
    assert "vaebook-graph" not in out  # CUDA-only contenders are not run on the CPU
    figures = __import__("json").loads(out_json.read_text())["devices"]["cpu"]["128"]
    assert set(figures["examples_per_s"]) == {"classic", "plain", "vaebook"}
    assert figures["verdict"] in ("quiet", "NOT TO BE TRUSTED")


def test_the_harness_warms_up_then_times_and_counts_examples():
    calls = []
    batches = iter([torch.zeros(b, 2) for b in (4, 4, 4, 3, 5, 6)])
    rate = bench.throughput(calls.append, batches, steps=3, device=torch.device("cpu"), warmup=2)
    assert [c.shape[0] for c in calls] == [4, 4, 4, 3, 5] and rate > 0
    rate_with_sleep = bench.throughput(
        lambda b: __import__("time").sleep(0.01), iter([torch.zeros(10, 1)] * 3), 2,
        torch.device("cpu"), warmup=1,
    )  # fmt: skip
    assert rate_with_sleep < 10 / 0.01  # 20 examples in at least 0.02 s


def test_index_batches_are_full_shuffled_batches():
    x = torch.arange(10.0)[:, None]
    gen = bench.index_batches(x, 4, seed=0)
    first_epoch = [next(gen) for _ in range(2)]
    assert all(b.shape == (4, 1) for b in first_epoch)
    assert len(torch.cat(first_epoch).unique()) == 8  # no row twice within an epoch


def test_bench_noise_verdict(capsys):
    ratios = {"plain": [1.3, 1.32], "classic": [2.0, 2.1]}
    assert bench.verdict("[cpu]", [1.0, 1.05, 1.02], ratios, 128) == "quiet"
    assert bench.verdict("[cpu]", [1.0, 1.3, 1.02], ratios, 128) == "NOT TO BE TRUSTED"
    ratios["plain"] = [1.3, 2.0]
    assert bench.verdict("[cpu]", [1.0, 1.0, 1.0], ratios, 128) == "NOT TO BE TRUSTED"
    assert "NOT TO BE TRUSTED" in capsys.readouterr().out


def test_bench_floor_counts_the_steps_matmuls():
    """4 forward products, 4 weight gradients, 3 input gradients (the data need none)."""
    assert len(bench.step_matmuls(128)) == 11
    full = 3 * sum(2 * 128 * n_in * n_out for n_in, n_out in bench.LAYERS)
    assert bench.step_flops(128) == full - 2 * 128 * 784 * 400


def test_bench_explicit_loop_matches_the_distributions_loop():
    """The per-example loop with explicit densities against torch.distributions (the oracle),
    same draws."""
    from vaebook.vae.models import VAE

    torch.manual_seed(0)
    model, x = VAE(784, (400,), 20).eval(), torch.rand(3, 784)
    torch.manual_seed(1)
    explicit = bench.loglik_loop_explicit(model, x, 50)
    torch.manual_seed(1)
    oracle = bench.loglik_loop_per_example(model, x, 50)
    torch.testing.assert_close(explicit, oracle, rtol=1e-5, atol=1e-3)


def write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_bench_data_are_trains_data_sets(tmp_path):
    """--dataset takes train's names and is read by train's loader: digits brought to
    28 x 28, an MNIST folder's training images as they are, each repeated to 10,000 rows."""
    from vaebook.vae.config import DATASETS

    choices = next(a for a in bench.build_parser()._actions if a.dest == "dataset").choices
    assert set(choices) <= set(DATASETS)
    digits = bench.bench_784_images(Namespace(dataset="digits", data_dir=None, batch_size=[128]))
    n = 1797 - 359  # digits' training rows
    assert digits.shape == (-(-10_000 // n) * n, 28, 28) and digits.dtype == np.uint8
    train = np.random.default_rng(0).integers(0, 256, (7, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", train[:2])
    args = Namespace(dataset="mnist", data_dir=str(tmp_path), batch_size=[4096])
    images = bench.bench_784_images(args)
    assert images.shape[0] >= 4 * 4096
    np.testing.assert_array_equal(images[:7], train.astype(np.uint8))


def test_bench_bad_input_is_one_line(tmp_path, capsys):
    assert bench.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "MNIST" in err[0]
    with pytest.raises(SystemExit):
        bench.main(["--contenders", "classic,turbo"])
