"""Data sets as tensors: ``digits`` (bundled), ``mnist`` (local IDX files), ``ppca`` (synthetic).

Every loader returns a :class:`DataSplit` of float32 tensors (N, D), rows are
examples. Binarisation is ``none``, ``static`` (Bernoulli draw with a fixed seed,
once) or ``dynamic`` (the trainer redraws the training set every epoch on the
device; the test set gets the fixed static draw so evaluations stay comparable).
The train/test split of ``digits`` and ``ppca`` is a permutation fixed by the seed;
MNIST keeps its standard 60000/10000 split. Nothing is downloaded.

The ``ppca`` data set's exact likelihood and maximum-likelihood fit are in
:mod:`vaebook.vae.ppca`.
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import BINARIZATIONS, DATASETS

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# MD5 of the published .gz files (as listed by torchvision); uncompressed files are
# checked by their IDX header and size only.
MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
MNIST_URL_HINT = (
    "https://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
)


class DatasetError(ValueError):
    """Bad data set name, options, or missing/corrupt files (the CLI exits with status 2)."""


@dataclass
class DataSplit:
    """A data set split into train and test rows, with how it was made."""

    name: str
    train: torch.Tensor  # (N_train, D) float32
    test: torch.Tensor  # (N_test, D) float32
    binarization: str
    info: dict = field(default_factory=dict)

    @property
    def data_dim(self) -> int:
        return self.train.shape[1]


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    binarize: str = "none",
    seed: int = 0,
    test_fraction: float = 0.2,
) -> DataSplit:
    """Load data set ``name`` (see :data:`DATASETS`) and binarise it as asked."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if binarize not in BINARIZATIONS:
        raise DatasetError(
            f"unknown binarization {binarize!r}; choose from {', '.join(BINARIZATIONS)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    info: dict = {"seed": seed}
    if name == "digits":
        from sklearn.datasets import load_digits

        x = torch.from_numpy(load_digits().data.astype(np.float32) / 16.0)  # (1797, 64)
        train, test = split_rows(x, test_fraction, seed)
        info["image_shape"] = [8, 8]
    elif name == "mnist":
        if data_dir is None:
            raise DatasetError(
                "dataset 'mnist' needs --data-dir, a folder with the four IDX files from "
                f"{MNIST_URL_HINT}"
            )
        train, test = load_mnist(data_dir)
        info["image_shape"], info["data_dir"] = [28, 28], str(data_dir)
    else:
        if binarize != "none":
            raise DatasetError("ppca data are real-valued; use binarize='none'")
        x, params = make_ppca(seed=seed)
        train, test = split_rows(x, test_fraction, seed)
        info["true_params"] = {k: v.tolist() for k, v in params.items()}
    if binarize in ("static", "dynamic"):
        gen = torch.Generator().manual_seed(seed + 1)
        test = torch.bernoulli(test, generator=gen)
        if binarize == "static":
            train = torch.bernoulli(train, generator=gen)
    return DataSplit(name, train.contiguous(), test.contiguous(), binarize, info)


def split_rows(
    x: torch.Tensor, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle rows with a generator seeded by ``seed`` and cut off the test fraction."""
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))  # (N,)
    n_test = max(1, int(round(test_fraction * x.shape[0])))
    return x[perm[n_test:]], x[perm[:n_test]]


# -- MNIST -----------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally .gz) into an array; checks the header against the size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(raw) != offset + math.prod(shape):
        raise DatasetError(
            f"{path} is truncated or corrupt: header says {shape}, file has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def find_mnist_file(folder: Path, stem: str) -> Path | None:
    """Path of ``stem`` or ``stem.gz`` in folder, verifying the .gz checksum; None if absent."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            expected = MNIST_GZ_MD5.get(candidate.name)
            if expected and hashlib.md5(candidate.read_bytes()).hexdigest() != expected:
                raise DatasetError(
                    f"checksum mismatch for {candidate}; re-download it from {MNIST_URL_HINT}"
                )
            return candidate
    return None


def load_mnist(data_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST train and test images as float32 in [0, 1]: (60000, 784), (10000, 784)."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DatasetError(
            f"MNIST folder {folder} does not exist; "
            f"put the four IDX files from {MNIST_URL_HINT} there"
        )
    paths = {key: find_mnist_file(folder, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DatasetError(
            f"missing MNIST files in {folder}: {', '.join(missing)} (or .gz); "
            f"get them from {MNIST_URL_HINT}"
        )
    images = []
    for key in ("train_images", "test_images"):
        arr = read_idx(paths[key])  # (N, 28, 28) uint8
        if arr.ndim != 3 or arr.shape[1:] != (28, 28):
            raise DatasetError(f"{paths[key]} has shape {arr.shape}, expected (N, 28, 28)")
        images.append(
            torch.from_numpy(arr.reshape(arr.shape[0], -1).astype(np.float32) / 255.0)
        )  # (N, 784)
    return images[0], images[1]


# -- probabilistic PCA -----------------------------------------------------------
def make_ppca(
    n: int = 5000, data_dim: int = 10, latent_dim: int = 2, noise_std: float = 0.5, seed: int = 0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw x = W z + b + noise_std * eps, z and eps standard normal.

    Returns x (n, D) and the generator {W, b, sigma2}."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(data_dim, latent_dim, generator=gen, dtype=torch.float64)  # (D, L)
    b = torch.randn(data_dim, generator=gen, dtype=torch.float64)  # (D,)
    z = torch.randn(n, latent_dim, generator=gen, dtype=torch.float64)  # (n, L)
    x = (
        z @ w.T + b + noise_std * torch.randn(n, data_dim, generator=gen, dtype=torch.float64)
    )  # (n, D)
    return x.float(), {"W": w, "b": b, "sigma2": torch.tensor(noise_std**2, dtype=torch.float64)}
