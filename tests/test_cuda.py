"""The training half on a CUDA GPU: a training step, bitwise resume on the same GPU, the
refusal to resume on another kind of device (before any file is touched), bf16 autocast
and ``torch.compile``, ``evaluate``, and ``reproduce`` of one small run.

Marked ``cuda``: ``pytest -m cuda`` selects them; without a GPU (or in the ordinary suite,
which pins the CPU: see conftest.py) they skip with the reason. Written for the torch of
the GPU machine too (2.11): only long-standing APIs.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vaebook.vae.config import TrainConfig
from vaebook.vae.models import VAE
from vaebook.vae.train import make_optimizer, make_train_step, train

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path, **overrides):
    base = dict(
        dataset="digits",
        binarization="dynamic",
        epochs=2,
        batch_size=128,
        hidden_dims=[32],
        latent_dim=4,
        runs_dir=str(tmp_path),
        run_name="run",
        progress=False,
        seed=3,
        device="cuda",
    )
    return TrainConfig.from_dict({**base, **overrides})


def vaebook(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "vaebook", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def rows(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(l).items() if k != "wall_time_s"} for l in lines]


def test_a_training_step_on_cuda():
    torch.manual_seed(0)
    model = VAE(64, (32,), 4).cuda()
    step = make_train_step(model, make_optimizer(model, 1e-3))
    x = torch.rand(128, 64, device="cuda").bernoulli()  # (B, D)
    before = [p.detach().clone() for p in model.parameters()]
    out = step(x)  # (3,): loss, reconstruction, KL; stays on the GPU
    assert out.device.type == "cuda" and out.dtype == torch.float32 and out.shape == (3,)
    loss, recon, kl = out.tolist()
    assert loss == pytest.approx(kl - recon, rel=1e-5) and kl >= 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_resume_on_the_same_gpu_is_bitwise(tmp_path):
    train(config(tmp_path / "a", epochs=4))
    train(config(tmp_path / "b", epochs=2))
    train(config(tmp_path / "b", epochs=4), resume=True)
    wa = load_file(str(tmp_path / "a/run/model.safetensors"))
    wb = load_file(str(tmp_path / "b/run/model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert rows(tmp_path / "a/run") == rows(tmp_path / "b/run")
    prov = json.loads((tmp_path / "b/run/provenance.json").read_text())
    assert prov["device"].startswith("cuda") and prov["resumed_from_epoch"] == 2
    assert prov["gpu_name"] == torch.cuda.get_device_name() and prov["cuda_version"]
    assert isinstance(prov["tf32"], bool) and "gpu_driver_version" in prov


def test_resuming_on_another_kind_of_device_is_refused_before_anything_is_touched(tmp_path):
    from vaebook.cli import build_parser

    train(config(tmp_path / "g", epochs=1))  # a GPU checkpoint
    train(config(tmp_path / "c", epochs=1, device="cpu", threads=1))  # a CPU checkpoint
    for run, device, made_on in (("g/run", "cpu", "cuda"), ("c/run", "cuda", "cpu")):
        before = snapshot(tmp_path / run)
        result = vaebook(
            "train", "--resume", tmp_path / run, "--epochs", "2", "--device", device, cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"made on {made_on}" in lines[0], result.stderr
        advice = lines[0].split("`")[1].split()
        assert advice[:5] == ["python", "-m", "vaebook", "train", "--resume"]
        build_parser().parse_args(advice[3:])  # a command the CLI accepts
        assert snapshot(tmp_path / run) == before
    result = vaebook("train", "--resume", tmp_path / "g/run", "--epochs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # without --device: on the GPU it was made on


def test_bf16_autocast_and_compile(tmp_path):
    plain = train(config(tmp_path / "plain", epochs=3))
    fast = train(config(tmp_path / "fast", epochs=3, bf16=True, compile=True))
    prov = json.loads((tmp_path / "fast/run/provenance.json").read_text())
    assert prov["bf16_autocast"] is True and prov["compiled"] is True
    assert torch.isfinite(torch.tensor(fast["test_elbo"]))
    assert abs(fast["test_elbo"] - plain["test_elbo"]) < 2.0  # nats: the same recipe


def test_evaluate_on_cuda(tmp_path):
    train(config(tmp_path, epochs=2))
    run = tmp_path / "run"
    results = {}
    for device in ("cuda", "cpu"):
        result = vaebook(
            "evaluate", run, "--k", "500", "--iwae-k", "20", "--device", device, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
        results[device] = json.loads((run / "evaluation.json").read_text())
    gpu, cpu = results["cuda"], results["cpu"]
    assert gpu["device"].startswith("cuda") and gpu["consistent"]
    assert gpu["elbo"] <= gpu["iwae_20"] <= gpu["log_likelihood"]
    # other draws on the GPU: the same quantities within a few standard errors
    for key in ("elbo", "log_likelihood"):
        assert abs(gpu[key] - cpu[key]) < 5 * cpu[f"{key}_stderr"] + 0.05, key


def test_reproduce_one_small_run_on_cuda(tmp_path):
    from vaebook.vae import pretrained as P

    name = "digits-L4-beta1-seed0"
    result = vaebook(
        "reproduce",
        "--run",
        name,
        "--device",
        "cuda",
        "--epochs",
        "3",
        "--runs-dir",
        tmp_path,
        "--no-progress",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    run = P.load(name, root=tmp_path)
    assert run.provenance["device"].startswith("cuda") and run.provenance["gpu_name"]
    assert run.provenance["epochs"] == 3 and len(run.history) == 3
    assert run.metrics["test"]["elbo"] <= run.metrics["test"]["log_likelihood"]
