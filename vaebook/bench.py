"""``python -m vaebook bench``: vaebook's training step against two baselines, the matmul
floor, and the machine's noise.

Contenders, same architecture (784-400-20-400-784), same batch, same number of steps,
alternating rounds in one process (the best round of each is reported):

(a) classic -- the loop of pytorch/examples ``vae/main.py``: a per-item ``Dataset``
    (torchvision's MNIST ``__getitem__``: ``Image.fromarray`` then ``ToTensor``),
    ``DataLoader(shuffle=True)``, sigmoid outputs with ``F.binary_cross_entropy(...,
    reduction='sum')`` plus the analytic KL, Adam lr 1e-3, ``loss.item()`` every step.
(b) plain -- the strongest simple baseline: the same model, loss and optimizer, but the data
    are one float tensor in memory and batches are index slices (no per-item conversion,
    no collation).
(c) vaebook -- the very step :func:`vaebook.vae.train.train` repeats
    (:func:`vaebook.vae.train.make_train_step`): logits and the explicit Bernoulli
    log-likelihood, fused Adam, one host sync every 20 steps.

The floor: the matrix products one training step cannot avoid, timed bare (``addmm``/``mm``
of exactly the step's shapes, in this process, at this thread count): per linear layer the
forward product and the weight gradient, and the input gradient for every layer but the
first (the data need no gradient). Each contender's examples/s is reported as a fraction of
the examples/s at that floor.

Noise: the floor is timed again before every round, before and after the log-likelihood
timings and at the end; if those probes differ by more than 15 %, or the per-round ratios do,
the verdict says the figures are not to be trusted.

Also times :func:`vaebook.vae.objectives.estimate_log_likelihood` against per-example
loops (those loops are timed on a few examples and extrapolated, and say so). Asserts
nothing.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .vae.models import VAE
from .vae.objectives import (
    encode_float32,
    estimate_log_likelihood,
    log_weights,
    reparameterise,
)
from .vae.train import make_optimizer, make_train_step, select_device

NOISE_LIMIT = 0.15  # probes or per-round ratios further apart than this: not to be trusted
LAYERS = ((784, 400), (400, 40), (20, 400), (400, 784))  # vaebook's linear layers (in, out)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def bench_plain(x: torch.Tensor, device, steps: int, batch_size: int, seed: int) -> float:
    """Examples/second of the plain loop: the classic model, loss and optimizer, the data one
    in-memory tensor, index batches, ``loss.item()`` every step."""
    x = x.to(device)  # (N, D)
    model = ClassicVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator(device=device).manual_seed(seed)
    done, seen, start, train_loss = 0, 0, None, 0.0
    while done < steps + 5:
        for idx in torch.randperm(x.shape[0], generator=gen, device=device).split(batch_size):
            if done == 5:
                seen, start = 0, time.perf_counter()
            data = x[idx]  # (B, D)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = classic_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
            done, seen = done + 1, seen + idx.shape[0]
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


# -- the matmul floor, also the noise probe ----------------------------------------------
def step_matmuls(batch: int) -> list[tuple[str, int, int, int]]:
    """The matrix products of one training step of 784-400-20-400-784 at this batch, as
    ``(kind, m, k, n)`` for an (m, k) @ (k, n) product: per layer the forward ``addmm``, the
    weight gradient, and the input gradient for every layer but the first."""
    out = []
    for i, (n_in, n_out) in enumerate(LAYERS):
        out.append(("forward", batch, n_in, n_out))  # x (B, in) @ W^T (in, out)
        out.append(("grad_weight", n_out, batch, n_in))  # dY^T (out, B) @ x (B, in)
        if i > 0:
            out.append(("grad_input", batch, n_out, n_in))  # dY (B, out) @ W (out, in)
    return out


def step_flops(batch: int) -> int:
    """Floating-point operations of :func:`step_matmuls`, 2 m k n each."""
    return sum(2 * m * k * n for _, m, k, n in step_matmuls(batch))


class MatmulFloor:
    """Times the bare matrix products of one step (the same layouts as ``nn.Linear`` and
    its backward: transposed views, not copies). :meth:`probe` returns seconds per step."""

    def __init__(self, batch: int, device: torch.device, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.device, self.batch, self.ops = device, batch, []

        def rand(*shape):
            return torch.randn(*shape, generator=gen).to(device)

        for i, (n_in, n_out) in enumerate(LAYERS):
            x, w, b, dy = rand(batch, n_in), rand(n_out, n_in), rand(n_out), rand(batch, n_out)
            self.ops.append((torch.addmm, (b, x, w.t())))
            self.ops.append((torch.mm, (dy.t(), x)))
            if i > 0:
                self.ops.append((torch.mm, (dy, w)))
        self.probe(0.1)  # warm up: thread pool, allocator, kernel selection

    def once(self) -> None:
        for fn, args in self.ops:
            fn(*args)

    def probe(self, seconds: float = 0.25, blocks: int = 5) -> float:
        """Best over ``blocks`` blocks of the seconds per step's products."""
        sync(self.device)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < seconds / blocks:  # calibrate the block length
            self.once()
            n += 1
        sync(self.device)
        best = math.inf
        for _ in range(blocks):
            start = time.perf_counter()
            for _ in range(n):
                self.once()
            sync(self.device)
            best = min(best, (time.perf_counter() - start) / n)
        return best


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


@torch.no_grad()
def loglik_loop_explicit(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """One example at a time, its k samples vectorised, with the explicit densities of
    :mod:`vaebook.vae.objectives` (Bernoulli log-likelihood from the logits directly) -- the
    strongest simple loop."""
    out = []
    for xi in x[:, None]:  # (1, D)
        mu, logvar = encode_float32(model, xi)  # (1, L), (1, L)
        z = reparameterise(mu, logvar, (k,))  # (k, 1, L)
        log_w = log_weights(model, xi, mu, logvar, z)  # (k, 1)
        out.append(torch.logsumexp(log_w[:, 0], 0) - math.log(k))
    return torch.stack(out)


def timed(fn, *args, device=None) -> float:
    if device is not None:
        sync(device)
    start = time.perf_counter()
    fn(*args)
    if device is not None:
        sync(device)
    return time.perf_counter() - start


def spread(values: list[float]) -> float:
    """Relative spread ``1 - min/max`` of positive values (0 for fewer than two)."""
    return 1 - min(values) / max(values) if len(values) > 1 else 0.0


def rounds_text(values: list[float], fmt: str = "{:.0f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


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


def device_names(spec: str) -> list[str]:
    if spec == "auto":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [n.strip() for n in spec.split(",") if n.strip()]


def run_bench(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [select_device(n) for n in device_names(args.device)]
    images = load_784(args)  # (N, 28, 28) uint8
    x = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / 255.0)  # (N, 784)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"data: {args.dataset} {tuple(x.shape)}; model 784-400-20-400-784; "
        f"batch {args.batch_size}; {args.steps} timed steps x {args.rounds} rounds; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{os.cpu_count()} CPUs, load average {load:.2f} at start"
    )
    for device in devices:
        bench_device(args, device, images, x)
    return 0


def bench_device(args, device: torch.device, images: np.ndarray, x: torch.Tensor) -> None:
    tag = f"[{device}]"
    floor = MatmulFloor(args.batch_size, device, args.seed)
    flops = step_flops(args.batch_size)
    probes: list[float] = []  # seconds per step's products, each probe
    names = ("classic", "plain", "vaebook")
    speeds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):  # alternate, so background load hits every contender alike
        probes.append(floor.probe())
        order = names[r % 3 :] + names[: r % 3]  # rotate who goes first
        for name in order:
            torch.manual_seed(args.seed)
            if name == "classic":
                speeds[name].append(bench_reference(images, device, args.steps, args.batch_size))
            elif name == "plain":
                speeds[name].append(bench_plain(x, device, args.steps, args.batch_size, args.seed))
            else:
                fast, model = bench_vaebook(x, device, args.steps, args.batch_size, args.seed)
                speeds[name].append(fast)
    probes.append(floor.probe())
    best = {n: max(v) for n, v in speeds.items()}
    floor_s = min(probes)
    floor_eps = args.batch_size / floor_s
    print(
        f"{tag} matmul floor: {len(step_matmuls(args.batch_size))} products of one step, "
        f"{flops / args.batch_size / 1e6:.2f} MFLOP per example, best probe "
        f"{flops / floor_s / 1e9:.0f} GFLOP/s = {floor_eps:10.0f} examples/s"
    )
    labels = {
        "classic": "classic example loop (per-item Dataset):",
        "plain": "plain loop (in-memory tensor batches):  ",
        "vaebook": "vaebook training step:                  ",
    }
    for name in names:
        print(
            f"{tag} {labels[name]} {best[name]:10.0f} examples/s = "
            f"{100 * best[name] / floor_eps:3.0f} % of the matmul floor  "
            f"(rounds: {rounds_text(speeds[name])})"
        )
    ratios = {}
    for base in ("plain", "classic"):
        per_round = [f / b for f, b in zip(speeds["vaebook"], speeds[base], strict=True)]
        ratios[base] = per_round
        print(
            f"{tag} ratio vaebook / {base + ':':8} {best['vaebook'] / best[base]:.2f}x "
            f"(best rounds); per-round ratios: {rounds_text(per_round, '{:.2f}')}"
        )
    print(
        f"{tag} fraction of the matmul floor (vaebook step): "
        f"{100 * best['vaebook'] / floor_eps:.0f} %"
    )
    if not args.skip_ll:
        probes.append(floor.probe())
        loglik(args, device, model, x, tag, flops / floor_s)
        probes.append(floor.probe())
    verdict(tag, probes, ratios, args.batch_size)


def loglik(args, device, model: VAE, x: torch.Tensor, tag: str, flop_rate: float) -> None:
    model.eval()
    xs = x[: args.ll_examples].to(device)
    n, k = xs.shape[0], args.ll_k
    n_loop = min(args.ll_loop_examples, n)
    n_naive = max(1, n_loop // 10)
    torch.manual_seed(args.seed)
    t_vec = timed(estimate_log_likelihood, model, xs, k, device=device)
    scale = n / n_loop
    t_exp = timed(loglik_loop_explicit, model, xs[:n_loop], k, device=device) * scale
    t_dist = timed(loglik_loop_per_example, model, xs[:n_loop], k, device=device) * scale
    t_naive = timed(loglik_loop_per_sample, model, xs[:n_naive], k, device=device) * n / n_naive

    def extrapolated(m: int) -> str:
        if m == n:
            return f"timed on all {n} examples"
        return f"EXTRAPOLATED: timed on {m} of {n} examples, scaled by {n / m:g}"

    # forward products only: the encoder once per example, the decoder once per sample
    flops = n * sum(2 * a * b * (1 if i < 2 else k) for i, (a, b) in enumerate(LAYERS))
    print(f"{tag} log p(x) estimate, k={k}, {n} examples:")
    print(
        f"    matmul floor ({flops / 1e12:.2f} TFLOP at the probe's "
        f"{flop_rate / 1e9:.0f} GFLOP/s):   {flops / flop_rate:9.2f} s"
    )
    print(
        f"    vectorised (estimate_log_likelihood):          {t_vec:9.2f} s  "
        f"(timed on all; {100 * flops / flop_rate / t_vec:.0f} % of the floor)"
    )
    rows = (
        ("per-example loop, explicit densities:", t_exp, n_loop),
        ("per-example loop, torch.distributions:", t_dist, n_loop),
        ("per-example loop, one sample at a time:", t_naive, n_naive),
    )
    for label, t, m in rows:
        print(
            f"    {label:46} {t:9.2f} s  (ratio loop / vectorised {t / t_vec:.2f}x; "
            f"{extrapolated(m)})"
        )


def verdict(tag: str, probes: list[float], ratios: dict[str, list[float]], batch: int) -> None:
    """Noise: spread of the matmul probes and of the per-round ratios."""
    probe_spread = spread(probes)
    ratio_spread = max(spread(v) for v in ratios.values())
    print(
        f"{tag} noise: matmul probe {rounds_text([batch / p for p in probes])} examples/s "
        f"(spread {100 * probe_spread:.0f} %); per-round ratio spread {100 * ratio_spread:.0f} %"
    )
    if max(probe_spread, ratio_spread) > NOISE_LIMIT:
        print(
            f"{tag} noise verdict: NOT TO BE TRUSTED -- the probes or the rounds differ by more "
            f"than {100 * NOISE_LIMIT:.0f} % (another process is competing for the CPU); "
            "rerun on a quiet machine"
        )
    elif len(probes) < 3 or len(next(iter(ratios.values()))) < 2:
        print(
            f"{tag} noise verdict: quiet by the probes, but too few rounds to judge the "
            "ratios; use --rounds 3 or more"
        )
    else:
        print(
            f"{tag} noise verdict: quiet -- probes and rounds within "
            f"{100 * NOISE_LIMIT:.0f} %; the figures can be trusted"
        )
