"""``python -m vaebook bench``: vaebook's training step against the classic PyTorch VAE loop.

(a) The reference is written the way pytorch/examples ``vae/main.py`` does it:
a per-item ``Dataset`` (torchvision's MNIST ``__getitem__``: ``Image.fromarray``
then ``ToTensor``), ``DataLoader(batch_size=128, shuffle=True)``, sigmoid outputs
with ``F.binary_cross_entropy(..., reduction='sum')`` plus the analytic KL, Adam
lr 1e-3, ``loss.item()`` every step.
(b) vaebook: data on the device, index batches, logits BCE through
``torch.distributions``, fused Adam, one host sync every 20 steps -- the very step
function :func:`vaebook.train.train` uses (:func:`vaebook.train.make_train_step`).

Same architecture (784-400-20-400-784), same number of steps, one process.
Also times :func:`vaebook.objectives.estimate_log_likelihood` against
per-example Python loops. Prints examples/second and ratios; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .vae.models import VAE
from .vae.objectives import estimate_log_likelihood
from .vae.train import make_optimizer, make_train_step, select_device


# -- the classic example, kept as it is written there -----------------------------
class ClassicVAE(nn.Module):
    """pytorch/examples vae/main.py ``VAE``."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def classic_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


class PerItemImages(Dataset):
    """torchvision MNIST ``__getitem__`` + ``ToTensor``: PIL image per item, then float / 255."""

    def __init__(self, images_uint8: np.ndarray):
        self.images = images_uint8  # (N, 28, 28) uint8

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        from PIL import Image

        img = Image.fromarray(self.images[index], mode="L")
        tensor = torch.from_numpy(np.array(img, np.uint8, copy=True)).view(1, 28, 28)  # ToTensor
        return tensor.contiguous().float().div(255), 0


def bench_reference(images: np.ndarray, device, steps: int, batch_size: int) -> float:
    """Examples/second of the classic loop over ``steps`` steps (after 5 warm-up steps)."""
    model = ClassicVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(PerItemImages(images), batch_size=batch_size, shuffle=True, **kwargs)
    done, seen, start, train_loss = 0, 0, None, 0.0
    while done < steps + 5:
        for data, _ in loader:
            if done == 5:
                seen, start = 0, time.perf_counter()
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = classic_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            done, seen = done + 1, seen + data.shape[0]
            if done == steps + 5:
                break
    return seen / (time.perf_counter() - start)


def bench_vaebook(
    x: torch.Tensor, device, steps: int, batch_size: int, seed: int
) -> tuple[float, VAE]:
    """Examples/second of vaebook's training step with index batches from device-resident data."""
    x = x.to(device)  # (N, D)
    model = VAE(784, (400,), 20).to(device)
    step = make_train_step(model, make_optimizer(model, 1e-3))
    gen = torch.Generator(device=device).manual_seed(seed)
    done, seen, start = 0, 0, None
    sums = torch.zeros(3, device=device)
    while done < steps + 5:
        for idx in torch.randperm(x.shape[0], generator=gen, device=device).split(batch_size):
            if done == 5:
                sums.sum().item()
                seen, start = 0, time.perf_counter()
            sums += step(x[idx])  # idx: (B,)
            done, seen = done + 1, seen + idx.shape[0]
            if done % 20 == 0:
                sums.sum().item()  # the trainer's progress sync
            if done == steps + 5:
                break
    sums.sum().item()
    return seen / (time.perf_counter() - start), model


# -- log-likelihood estimate vs per-example loops ---------------------------------
@torch.no_grad()
def loglik_loop_per_sample(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """Naive: for each example, for each of k samples, one z at a time; logsumexp at the end."""
    out = []
    for xi in x:  # (D,)
        q = model.posterior(xi[None])
        log_w = []
        for _ in range(k):
            z = q.sample()  # (1, L)
            log_w.append(
                model.likelihood(z).log_prob(xi) + model.prior().log_prob(z) - q.log_prob(z)
            )
        out.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))
    return torch.stack(out)


@torch.no_grad()
def loglik_loop_per_example(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """One example at a time, its k samples vectorised."""
    out = []
    for xi in x:  # (D,)
        q = model.posterior(xi[None])
        z = q.sample((k,))  # (k, 1, L)
        log_px_z = model.likelihood(z).log_prob(xi)  # (k, 1)
        log_w = log_px_z + model.prior().log_prob(z) - q.log_prob(z)  # (k, 1)
        out.append(torch.logsumexp(log_w[:, 0], 0) - math.log(k))
    return torch.stack(out)


def timed(fn, *args, device=None) -> float:
    start = time.perf_counter()
    fn(*args)
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def load_784(args) -> np.ndarray:
    """uint8 images (N, 28, 28) for the throughput comparison."""
    if args.dataset == "mnist":  # the training images, or the test images when only those are there
        from pathlib import Path

        from .vae.data import MNIST_FILES, MNIST_URL_HINT, DatasetError, find_mnist_file, read_idx

        if args.data_dir is None:
            raise DatasetError("bench --dataset mnist needs --data-dir")
        folder = Path(args.data_dir)
        for key in ("train_images", "test_images"):
            path = find_mnist_file(folder, MNIST_FILES[key]) if folder.is_dir() else None
            if path is not None:
                images = read_idx(path)  # (N, 28, 28) uint8
                if images.ndim != 3 or images.shape[1:] != (28, 28):
                    raise DatasetError(f"{path} has shape {images.shape}, expected (N, 28, 28)")
                print(f"MNIST images from {path.name}")
                return images
        raise DatasetError(f"no MNIST image file in {folder}; get one from {MNIST_URL_HINT}")
    if args.dataset == "digits":
        from sklearn.datasets import load_digits

        small = torch.from_numpy(load_digits().images.astype(np.float32) / 16.0)  # (1797, 8, 8)
        big = F.interpolate(small[:, None], size=(28, 28), mode="bilinear", align_corners=False)
        return (big[:, 0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)  # (1797, 28, 28)
    rng = np.random.default_rng(args.seed)
    return rng.integers(0, 256, size=(10000, 28, 28), dtype=np.uint8)


def run_bench(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    names = (
        ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        if args.devices == "auto"
        else args.devices.split(",")
    )
    devices = [select_device(n.strip()) for n in names]
    images = load_784(args)  # (N, 28, 28) uint8
    x = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / 255.0)  # (N, 784)
    print(
        f"data: {args.dataset} {tuple(x.shape)}; model 784-400-20-400-784; "
        f"batch {args.batch_size}; {args.steps} timed steps; torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    for device in devices:
        refs, fasts = [], []
        for _ in range(args.rounds):  # alternate, so background load hits both contenders alike
            torch.manual_seed(args.seed)
            refs.append(bench_reference(images, device, args.steps, args.batch_size))
            fast, model = bench_vaebook(x, device, args.steps, args.batch_size, args.seed)
            fasts.append(fast)
        ref, fast = max(refs), max(fasts)
        print(
            f"[{device}] reference (examples/vae loop): {ref:10.0f} examples/s  "
            f"(rounds: {', '.join(f'{r:.0f}' for r in refs)})"
        )
        print(
            f"[{device}] vaebook trainer step:          {fast:10.0f} examples/s  "
            f"(rounds: {', '.join(f'{r:.0f}' for r in fasts)})"
        )
        print(
            f"[{device}] ratio (best rounds) {fast / ref:.2f}x; per-round ratios: "
            f"{', '.join(f'{f / r:.2f}' for f, r in zip(fasts, refs, strict=True))}"
        )
        if args.skip_ll:
            continue
        model.eval()
        xs = x[: args.ll_examples].to(device)
        n_loop = min(args.ll_loop_examples, xs.shape[0])
        t_vec = timed(estimate_log_likelihood, model, xs, args.ll_k, device=device)
        t_ex = (
            timed(loglik_loop_per_example, model, xs[:n_loop], args.ll_k, device=device)
            * xs.shape[0]
            / n_loop
        )
        n_naive = max(1, n_loop // 10)
        t_naive = (
            timed(loglik_loop_per_sample, model, xs[:n_naive], args.ll_k, device=device)
            * xs.shape[0]
            / n_naive
        )
        print(f"[{device}] log p(x) estimate, k={args.ll_k}, {xs.shape[0]} examples:")
        print(f"    vectorised (estimate_log_likelihood):            {t_vec:9.2f} s")
        print(
            f"    per-example loop, k samples vectorised:        {t_ex:9.2f} s  "
            "(ratio to vectorised "
            f"{t_ex / t_vec:.1f}x; timed on {n_loop} examples, scaled)"
        )
        print(
            f"    per-example loop, one sample at a time:        {t_naive:9.2f} s  "
            "(ratio to vectorised "
            f"{t_naive / t_vec:.1f}x; timed on {n_naive} examples, scaled)"
        )
    return 0
