"""``python tools/bench.py``: vaebook's training step against two baselines, the matmul floor
and the machine's noise; on CUDA also bf16 autocast, ``torch.compile`` and a whole-step CUDA
graph; and the log-likelihood estimate against per-example loops. Asserts nothing.

Contenders train the same architecture (784-400-20-400-784) at the same batch size, timed
by one harness (:func:`throughput`: warm-up steps, then the timed steps, synchronised with
the device), in alternating rounds in one process; the best round of each is reported:

- classic: the loop of pytorch/examples ``vae/main.py``: a per-item ``Dataset``
  (torchvision's MNIST ``__getitem__``: ``Image.fromarray`` then ``ToTensor``),
  ``DataLoader(shuffle=True)``, sigmoid outputs with ``F.binary_cross_entropy(...,
  reduction='sum')`` plus the analytic KL, Adam lr 1e-3, ``loss.item()`` every step;
- plain: the strongest simple baseline: the same model, loss and optimizer, the data one
  tensor on the device, batches index slices;
- vaebook: the step :func:`vaebook.vae.train.train` repeats
  (:func:`vaebook.vae.train.make_train_step`): logits and the explicit Bernoulli
  log-likelihood, fused Adam, one host sync every 20 steps;
- on CUDA (or when named in ``--contenders``): vaebook-bf16 (``bf16=True``),
  vaebook-compiled (``compile=True``) and, on CUDA only, vaebook-graph: the whole step
  (forward, backward, capturable Adam) captured once as a CUDA graph and replayed.

The floor: the matrix products one training step cannot avoid, timed bare (``addmm``/``mm``
of exactly the step's shapes, in this process, at this thread count): per linear layer the
forward product and the weight gradient, and the input gradient for every layer but the
first. Each contender's examples/s is reported as a fraction of the floor's. Noise: the
floor is timed again before every round and at the end; if those probes, or the per-round
ratios, differ by more than 15 %, the verdict says the figures are not to be trusted.

Data: a data set of ``python -m vaebook train`` (``--dataset digits|mnist|file``, the same
names and loader), its training images brought to 28 x 28 (bilinear) when they have
another size, and repeated to at least 10,000 rows and four batches.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vaebook.cli import OneLineParser, config_flag, positive_int
from vaebook.vae.config import DataConfig
from vaebook.vae.data import DatasetError, load_dataset
from vaebook.vae.devices import select_device
from vaebook.vae.models import VAE
from vaebook.vae.objectives import (
    elbo_terms,
    encode_float32,
    estimate_log_likelihood,
    log_weights,
    reparameterise,
)
from vaebook.vae.train import make_optimizer, make_train_step

NOISE_LIMIT = 0.15  # probes or per-round ratios further apart than this: not to be trusted
LAYERS = ((784, 400), (400, 40), (20, 400), (400, 784))  # vaebook's linear layers (in, out)
CPU_CONTENDERS = ("classic", "plain", "vaebook")
CUDA_CONTENDERS = ("vaebook-bf16", "vaebook-compiled", "vaebook-graph")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- the one timing harness ----------------------------------------------------------------
def throughput(
    step: Callable, batches: Iterator, steps: int, device: torch.device, warmup: int = 5
) -> float:
    """Examples per second of ``steps`` calls ``step(batch)`` after ``warmup`` untimed ones,
    the device synchronised before the clock starts and before it stops."""
    for _ in range(warmup):
        step(next(batches))
    sync(device)
    seen, start = 0, time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        step(batch)
        seen += batch.shape[0]
    sync(device)
    return seen / (time.perf_counter() - start)


def index_batches(x: torch.Tensor, batch: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless shuffled batches of ``batch`` rows of x (on x's device), full batches only."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    while True:
        perm = torch.randperm(x.shape[0], generator=gen, device=x.device)  # (N,)
        for idx in perm[: x.shape[0] // batch * batch].split(batch):
            yield x[idx]  # (B, D)


# -- the classic example, kept as it is written there ---------------------------------------
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


def classic_step(model: nn.Module, device: torch.device) -> Callable:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(data):
        data = data.to(device)
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = classic_loss(recon_batch, data, mu, logvar)
        loss.backward()
        loss.item()
        optimizer.step()

    return step


def loader_batches(images: np.ndarray, batch: int, device: torch.device) -> Iterator:
    """Endless batches of the classic loop's DataLoader (per-item conversion, shuffled)."""
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(PerItemImages(images), batch_size=batch, shuffle=True, **kwargs)
    while True:
        for data, _ in loader:
            yield data


# -- vaebook's step and its CUDA variants ------------------------------------------------
def vaebook_step(model: VAE, **options) -> Callable:
    """make_train_step (with ``options``: bf16, compile) and the trainer's sync every 20."""
    train_step = make_train_step(model, make_optimizer(model, 1e-3), **options)
    sums, count = torch.zeros(3, device=next(model.parameters()).device), itertools.count(1)

    def step(xb):
        nonlocal sums
        sums += train_step(xb)
        if next(count) % 20 == 0:
            sums.sum().item()  # the trainer's progress sync

    return step


def graph_step(model: VAE, x: torch.Tensor, batch: int) -> Callable:
    """The whole training step (forward, backward, Adam with ``capturable=True``) captured
    as one CUDA graph; a step copies the batch into the graph's input and replays it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    static_x = x[:batch].clone()  # (B, D)

    def one_step():  # the gradients are None before it: backward writes them afresh
        elbo_terms(model, static_x).loss.backward()
        optimizer.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up outside the graph (allocations, Adam state)
        for _ in range(3):
            optimizer.zero_grad(set_to_none=True)
            one_step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)  # so the graph's backward allocates the gradients
    with torch.cuda.graph(graph):
        one_step()

    def step(xb):
        static_x.copy_(xb)
        graph.replay()

    return step


# -- the matmul floor, also the noise probe ------------------------------------------------
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
        t0, n = time.perf_counter(), 0
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


# -- log-likelihood estimate vs per-example loops ------------------------------------------
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
    """One example at a time, its k samples vectorised (torch.distributions densities)."""
    out = []
    for xi in x:  # (D,)
        q = model.posterior(xi[None])
        z = q.sample((k,))  # (k, 1, L)
        log_w = model.likelihood(z).log_prob(xi) + model.prior().log_prob(z) - q.log_prob(z)
        out.append(torch.logsumexp(log_w[:, 0], 0) - math.log(k))  # log_w: (k, 1)
    return torch.stack(out)


@torch.no_grad()
def loglik_loop_explicit(model: VAE, x: torch.Tensor, k: int) -> torch.Tensor:
    """One example at a time, its k samples vectorised, with the explicit densities of
    :mod:`vaebook.vae.objectives` -- the strongest simple loop."""
    out = []
    for xi in x[:, None]:  # (1, D)
        mu, logvar = encode_float32(model, xi)  # (1, L), (1, L)
        z = reparameterise(mu, logvar, (k,))  # (k, 1, L)
        log_w = log_weights(model, xi, mu, logvar, z)  # (k, 1)
        out.append(torch.logsumexp(log_w[:, 0], 0) - math.log(k))
    return torch.stack(out)


def seconds(fn, *args, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn(*args)
    sync(device)
    return time.perf_counter() - start


def loglik(args, device, model: VAE, x: torch.Tensor, tag: str, flop_rate: float) -> dict:
    model.eval()
    xs = x[: args.ll_examples].to(device)
    n, k = xs.shape[0], args.ll_k
    n_loop = min(args.ll_loop_examples, n)
    n_naive = max(1, n_loop // 10)
    torch.manual_seed(args.seed)
    t_vec = seconds(estimate_log_likelihood, model, xs, k, device=device)
    rows = {
        "per-example loop, explicit densities:": (loglik_loop_explicit, n_loop),
        "per-example loop, torch.distributions:": (loglik_loop_per_example, n_loop),
        "per-example loop, one sample at a time:": (loglik_loop_per_sample, n_naive),
    }
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
    result = {"vectorised_s": t_vec, "floor_s": flops / flop_rate}
    for label, (loop, m) in rows.items():
        t = seconds(loop, model, xs[:m], k, device=device) * n / m
        how = f"timed on all {n} examples"
        if m != n:
            how = f"EXTRAPOLATED: timed on {m} of {n} examples, scaled by {n / m:g}"
        print(f"    {label:46} {t:9.2f} s  (ratio loop / vectorised {t / t_vec:.2f}x; {how})")
        result[label.rstrip(":")] = t
    return result


# -- the report --------------------------------------------------------------------------
def spread(values: list[float]) -> float:
    """Relative spread ``1 - min/max`` of positive values (0 for fewer than two)."""
    return 1 - min(values) / max(values) if len(values) > 1 else 0.0


def rounds_text(values: list[float], fmt: str = "{:.0f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


def verdict(tag: str, probes: list[float], ratios: dict[str, list[float]], batch: int) -> str:
    """Noise: spread of the matmul probes and of the per-round ratios; prints and returns
    the verdict."""
    probe_spread = spread(probes)
    ratio_spread = max((spread(v) for v in ratios.values()), default=0.0)
    print(
        f"{tag} noise: matmul probe {rounds_text([batch / p for p in probes])} examples/s "
        f"(spread {100 * probe_spread:.0f} %); per-round ratio spread {100 * ratio_spread:.0f} %"
    )
    if max(probe_spread, ratio_spread) > NOISE_LIMIT:
        word = "NOT TO BE TRUSTED"
        why = (
            f"the probes or the rounds differ by more than {100 * NOISE_LIMIT:.0f} % (another "
            "process is competing for the machine); rerun on a quiet machine"
        )
    elif len(probes) < 3 or not ratios or len(next(iter(ratios.values()))) < 2:
        word, why = "quiet", "by the probes, but too few rounds to judge the ratios (--rounds 3)"
    else:
        word = "quiet"
        why = f"probes and rounds within {100 * NOISE_LIMIT:.0f} %; the figures can be trusted"
    print(f"{tag} noise verdict: {word} -- {why}")
    return word


def bench_784_images(args) -> np.ndarray:
    """uint8 images (N, 28, 28): the training images of ``--dataset`` (train's loader),
    brought to 28 x 28 and repeated to at least 10,000 rows and four of the largest batch."""
    split = load_dataset(DataConfig(dataset=args.dataset, data_dir=args.data_dir))
    x = split.train  # (N, D) in [0, 1]
    side = math.isqrt(x.shape[1])
    if side * side != x.shape[1]:
        raise DatasetError(f"bench needs square images; {args.dataset} has {x.shape[1]} pixels")
    images = x.reshape(-1, 1, side, side)
    if side != 28:
        images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    rows = max(10_000, 4 * max(args.batch_size))
    images = images[:, 0].clamp(0, 1).repeat(math.ceil(rows / images.shape[0]), 1, 1)
    return (images.numpy() * 255).round().astype(np.uint8)  # (N, 28, 28)


def bench_device(args, device: torch.device, images: np.ndarray, batch: int) -> dict:
    tag = f"[{device} batch {batch}]"
    x = torch.from_numpy(images.reshape(len(images), 784).astype(np.float32) / 255).to(device)
    default = CPU_CONTENDERS + (CUDA_CONTENDERS if device.type == "cuda" else ())
    names = list(args.contenders or default)
    if "vaebook-graph" in names and device.type != "cuda":
        print(f"{tag} vaebook-graph skipped: a CUDA graph needs a CUDA device")
        names.remove("vaebook-graph")
    steps, batches = {}, {}
    for name in names:  # built once; the rounds re-time them
        torch.manual_seed(args.seed)
        model = (ClassicVAE() if name in ("classic", "plain") else VAE(784, (400,), 20)).to(device)
        if name == "classic":
            steps[name] = classic_step(model, device)
            batches[name] = loader_batches(images, batch, device)
            continue
        batches[name] = index_batches(x, batch, args.seed)
        if name == "plain":
            steps[name] = classic_step(model, device)
        elif name == "vaebook-graph":
            steps[name] = graph_step(model, x, batch)
        else:
            options = {"bf16": name == "vaebook-bf16", "compile": name == "vaebook-compiled"}
            steps[name] = vaebook_step(model, **options)
        if name == "vaebook":
            vaebook_model = model
    floor = MatmulFloor(batch, device, args.seed)
    probes, speeds = [], {n: [] for n in names}
    for r in range(args.rounds):  # alternate, so background load hits every contender alike
        probes.append(floor.probe())
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate who goes first
            speeds[name].append(throughput(steps[name], batches[name], args.steps, device))
    probes.append(floor.probe())
    best = {n: max(v) for n, v in speeds.items()}
    floor_eps = batch / min(probes)
    flops = step_flops(batch)
    print(
        f"{tag} matmul floor: {len(step_matmuls(batch))} products of one step, "
        f"{flops / batch / 1e6:.2f} MFLOP per example, best probe "
        f"{flops / min(probes) / 1e9:.0f} GFLOP/s = {floor_eps:10.0f} examples/s"
    )
    for name in names:
        print(
            f"{tag} {name:17s} {best[name]:10.0f} examples/s = "
            f"{100 * best[name] / floor_eps:3.0f} % of the matmul floor  "
            f"(rounds: {rounds_text(speeds[name])})"
        )
    ratios = {}
    for base in ("plain", "classic"):
        if "vaebook" in names and base in names:
            ratios[base] = [f / b for f, b in zip(speeds["vaebook"], speeds[base], strict=True)]
            print(
                f"{tag} ratio vaebook / {base + ':':8} {best['vaebook'] / best[base]:.2f}x "
                f"(best rounds); per-round ratios: {rounds_text(ratios[base], '{:.2f}')}"
            )
    result = {"examples_per_s": speeds, "floor_examples_per_s": floor_eps, "ratios": ratios}
    if not args.skip_ll and "vaebook" in names and batch == args.batch_size[0]:
        probes.append(floor.probe())
        result["loglik"] = loglik(args, device, vaebook_model, x, tag, flops / min(probes))
        probes.append(floor.probe())
    result["probes_examples_per_s"] = [batch / p for p in probes]
    result["verdict"] = verdict(tag, probes, ratios, batch)
    return result


def build_parser() -> OneLineParser:
    p = OneLineParser(prog="python tools/bench.py", description=__doc__.split("\n\n")[0])
    images = ("digits", "mnist", "file")  # train's data sets of images in [0, 1]
    config_flag(p, "dataset", default="digits", choices=images, metavar="{digits,mnist,file}")
    config_flag(p, "data_dir", default=None)
    config_flag(p, "seed", default=0)
    config_flag(p, "threads", default=None)
    p.add_argument(
        "--device",
        default="auto",
        help="cpu, cuda, or a comma list (cpu,cuda); auto: cpu, and cuda if present "
        "(default: auto)",
    )
    p.add_argument(
        "--batch-size",
        type=lambda t: [positive_int(v) for v in t.split(",")],
        default=[128],
        help="examples per step, or a comma list such as 128,1024,8192 (default: 128)",
    )
    p.add_argument(
        "--contenders",
        type=lambda t: [v for v in t.split(",") if v],
        default=None,
        help="a comma list of "
        + ", ".join(CPU_CONTENDERS + CUDA_CONTENDERS)
        + " (vaebook-graph needs CUDA) (default: the first three on the CPU, all on CUDA)",
    )
    p.add_argument("--steps", type=positive_int, default=200, help="timed steps (default: 200)")
    p.add_argument(
        "--rounds", type=positive_int, default=3, help="rounds; the best is reported (default: 3)"
    )
    p.add_argument("--ll-k", dest="ll_k", type=positive_int, default=5000, help="(default: 5000)")
    p.add_argument(
        "--ll-examples", dest="ll_examples", type=positive_int, default=1000, help="(default: 1000)"
    )
    p.add_argument(
        "--ll-loop-examples",
        dest="ll_loop_examples",
        type=positive_int,
        default=20,
        help="examples the per-example loops run on, scaled to --ll-examples (default: 20)",
    )
    p.add_argument("--skip-ll", dest="skip_ll", action="store_true", help="training steps only")
    p.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    unknown = set(args.contenders or ()) - set(CPU_CONTENDERS + CUDA_CONTENDERS)
    if unknown:
        build_parser().error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    try:
        devices = [select_device(n.strip()) for n in args.device.split(",") if n.strip()]
        images = bench_784_images(args)  # (N, 28, 28) uint8
    except (DatasetError, ValueError) as e:
        sys.stderr.write(f"bench: error: {e}\n")
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"data: {args.dataset} {images.shape[0]} x 28 x 28; model 784-400-20-400-784; batch "
        f"{rounds_text(args.batch_size)}; {args.steps} timed steps x {args.rounds} rounds; "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {os.cpu_count()} "
        f"CPUs, load average {load:.2f} at start"
    )
    results = {
        str(d): {b: bench_device(args, d, images, b) for b in args.batch_size} for d in devices
    }
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"torch": torch.__version__, "devices": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
