"""Data sets as tensors: ``digits`` (bundled), ``mnist`` (local IDX files), ``ppca``
(synthetic), ``file`` (a user's array).

:func:`load_dataset` takes the data section of the configuration
(:class:`~vaebook.vae.config.DataConfig`) and returns a :class:`DataSplit` of float32
tensors (N, D), rows are examples, with digit labels where the data set has them.
Binarization is ``none``, ``static`` (one fixed Bernoulli draw of the training set) or
``dynamic`` (the trainer redraws the training set every epoch on the device).

Nothing here depends on a run's training seed: the train/test split of ``digits``,
``ppca`` and ``file``, the ``ppca`` generator and the fixed Bernoulli draws (of the test
set, and of a static training set) come from :data:`DATA_SEED`, so two runs with
different seeds train and are scored on the same rows. MNIST keeps its standard
60000/10000 split. Nothing is downloaded.

The ``ppca`` data set's exact likelihood and maximum-likelihood fit are in
:mod:`vaebook.vae.ppca`.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import BINARIZATIONS, DATASETS, DataConfig

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


DATA_SEED = 0  # the split, the ppca generator and the fixed Bernoulli draws


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
    train_labels: torch.Tensor | None = None  # (N_train,) int64 digit labels, if known
    test_labels: torch.Tensor | None = None  # (N_test,)

    @property
    def data_dim(self) -> int:
        return self.train.shape[1]


def load_dataset(data: DataConfig) -> DataSplit:
    """The data set of ``data`` (see :data:`~vaebook.vae.config.DATASETS`), split and
    binarized as it asks. For ``mnist`` ``data.data_dir`` is the folder of IDX files, for
    ``file`` the ``.npy``/``.npz`` file."""
    name, binarization, test_fraction = data.dataset, data.binarization, data.test_fraction
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if binarization not in BINARIZATIONS:
        raise DatasetError(
            f"unknown binarization {binarization!r}; choose from {', '.join(BINARIZATIONS)}"
        )
    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be in (0, 1), got {test_fraction}")
    info: dict = {"data_seed": DATA_SEED}
    labels = None
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.from_numpy(digits.data.astype(np.float32) / 16.0)  # (1797, 64)
        labels = torch.from_numpy(digits.target.astype(np.int64))  # (1797,)
        (train, test), (train_labels, test_labels) = split_rows([x, labels], test_fraction)
        info["image_shape"] = [8, 8]
    elif name == "mnist":
        if data.data_dir is None:
            raise DatasetError(
                "dataset 'mnist' needs --data-dir, a folder with the MNIST IDX files from "
                f"{MNIST_URL_HINT}"
            )
        train, test, train_labels, test_labels = load_mnist(data.data_dir)
        info["image_shape"], info["data_dir"] = [28, 28], str(data.data_dir)
    elif name == "file":
        x = load_array(data.data_dir)
        (train, test), (train_labels, test_labels) = split_rows([x], test_fraction), (None, None)
        info["data_file"] = str(data.data_dir)
    else:
        if binarization != "none":
            raise DatasetError("ppca data are real-valued; use binarization 'none'")
        x, params = make_ppca(seed=DATA_SEED)
        (train, test), (train_labels, test_labels) = split_rows([x], test_fraction), (None, None)
        info["true_params"] = {k: v.tolist() for k, v in params.items()}
    if binarization in ("static", "dynamic"):
        test = torch.bernoulli(test, generator=torch.Generator().manual_seed(DATA_SEED + 1))
        info["test_binarization_seed"] = DATA_SEED + 1
        if binarization == "static":
            train = torch.bernoulli(train, generator=torch.Generator().manual_seed(DATA_SEED + 2))
            info["train_binarization_seed"] = DATA_SEED + 2
    return DataSplit(
        name, train.contiguous(), test.contiguous(), binarization, info, train_labels, test_labels
    )


def split_rows(columns: list[torch.Tensor], test_fraction: float):
    """Shuffle the rows of each tensor in ``columns`` by one permutation drawn from
    :data:`DATA_SEED` and cut off the test fraction: ``[(train, test) per column]``, or a
    single ``(train, test)`` pair when one column is given."""
    n = columns[0].shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(DATA_SEED))  # (N,)
    n_test = max(1, int(round(test_fraction * n)))
    parts = [(c[perm[n_test:]], c[perm[:n_test]]) for c in columns]
    return parts[0] if len(parts) == 1 else parts


def load_array(path: str | Path | None) -> torch.Tensor:
    """A user's examples from a ``.npy`` file, or the only array of an ``.npz`` file:
    shape (N, D) (or (N, H, W), flattened), finite values in [0, 1], at least 2 rows."""
    if path is None:
        raise DatasetError("dataset 'file' needs --data-dir, the path of a .npy or .npz file")
    path = Path(path)
    try:
        check_array_sizes(path)
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DatasetError(f"cannot read {path} as a .npy/.npz array: {message}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        if len(loaded.files) != 1:
            raise DatasetError(f"{path} holds {len(loaded.files)} arrays; expected exactly one")
        loaded = loaded[loaded.files[0]]
    if loaded.ndim < 2 or loaded.shape[0] < 2 or not np.issubdtype(loaded.dtype, np.number):
        raise DatasetError(
            f"{path}: expected a numeric array of examples (N, D), got {loaded.shape}"
        )
    x = loaded.reshape(loaded.shape[0], -1).astype(np.float32)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise DatasetError(f"{path}: values must be finite and in [0, 1]")
    return torch.from_numpy(x)


def check_array_sizes(path: Path) -> None:
    """Refuse, before anything is allocated, a ``.npy`` file (or an ``.npz`` member) whose
    header claims more bytes than the file holds, or more than half this machine's memory:
    NumPy allocates what the header claims before it reads (a few bytes can ask for
    terabytes)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    _check_npy_header(member, info.file_size, f"{path}:{info.filename}")
    else:
        with open(path, "rb") as f:
            _check_npy_header(f, path.stat().st_size, str(path))


def _check_npy_header(f, stored_bytes: int, where: str) -> None:
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
        (3, 0): np.lib.format.read_array_header_2_0,  # 3.0: the 2.0 layout, UTF-8 names
    }
    version = np.lib.format.read_magic(f)
    if version not in readers:
        raise DatasetError(f"{where}: unknown .npy format version {version}")
    shape, _, dtype = readers[version](f)
    claimed = math.prod(shape) * dtype.itemsize
    held = stored_bytes - f.tell()
    if claimed > held:
        raise DatasetError(
            f"{where}: its header claims an array of shape {shape} ({claimed:,} bytes), "
            f"but the file holds {held:,} bytes (truncated or forged)"
        )
    memory = _physical_memory()
    if memory is not None and claimed > memory // 2:
        raise DatasetError(
            f"{where}: an array of shape {shape} ({claimed:,} bytes) is more than half of "
            f"this machine's memory ({memory:,} bytes)"
        )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


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


def load_mnist(data_dir: str | Path):
    """MNIST train and test images as float32 in [0, 1], (N, 784) each, and their labels
    (int64, or None where the label file is absent). The two image files are required;
    label files are read only when present, and then checked."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DatasetError(
            f"MNIST folder {folder} does not exist; put the IDX files from {MNIST_URL_HINT} there"
        )
    paths = {key: find_mnist_file(folder, stem) for key, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[k] for k in ("train_images", "test_images") if paths[k] is None]
    if missing:
        raise DatasetError(
            f"missing MNIST files in {folder}: {', '.join(missing)} (or .gz); "
            f"get them from {MNIST_URL_HINT}"
        )
    out = []
    for split in ("train", "test"):
        arr = read_idx(paths[f"{split}_images"])  # (N, 28, 28) uint8
        if arr.ndim != 3 or arr.shape[1:] != (28, 28) or arr.shape[0] == 0:
            raise DatasetError(
                f"{paths[split + '_images']} has shape {arr.shape}, expected (N >= 1, 28, 28)"
            )
        images = torch.from_numpy(arr.reshape(arr.shape[0], -1).astype(np.float32) / 255.0)
        labels = None
        if paths[f"{split}_labels"] is not None:
            raw = read_idx(paths[f"{split}_labels"])
            if raw.shape != (arr.shape[0],) or raw.max(initial=0) > 9:
                raise DatasetError(
                    f"{paths[split + '_labels']} does not label {paths[split + '_images']}: "
                    f"shape {raw.shape}, values up to {raw.max(initial=0)} (expected "
                    f"({arr.shape[0]},), digits 0-9)"
                )
            labels = torch.from_numpy(raw.astype(np.int64))
        out.append((images, labels))
    (train, train_labels), (test, test_labels) = out
    return train, test, train_labels, test_labels


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
