"""Data loaders: splits fixed by the data seed, binarization, MNIST IDX parsing; and
vaebook.vae.ppca (the linear-Gaussian marginal and the closed-form pPCA MLE) against scipy,
scikit-learn and a numerical maximisation of the likelihood."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import optimize, stats
from sklearn.decomposition import PCA

from vaebook.vae.config import DataConfig
from vaebook.vae.data import (
    DatasetError,
    load_dataset,
    load_mnist,
    make_ppca,
    read_idx,
)
from vaebook.vae.ppca import ppca_log_likelihood, ppca_mle, ppca_mle_log_likelihood

LOCAL_MNIST = Path(
    os.environ.get(
        "VAEBOOK_MNIST_T10K", Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"
    )
)


def data(dataset="digits", data_dir=None, **values):
    """load_dataset of a DataConfig (unchecked values too: load_dataset checks them again)."""
    return load_dataset(DataConfig(dataset=dataset, data_dir=data_dir, **values))


def test_digits_range_split_labels():
    a = data("digits")
    assert a.train.shape[1] == 64 and a.train.shape[0] + a.test.shape[0] == 1797
    assert a.test.shape[0] == round(0.2 * 1797)
    assert a.train.min() >= 0 and a.train.max() <= 1 and a.train.max() == 1
    # the split is a partition: every image of the data set appears exactly once
    from sklearn.datasets import load_digits

    full = torch.from_numpy(load_digits().data.astype(np.float32) / 16.0)
    rows = torch.cat([a.train, a.test])
    assert torch.equal(torch.unique(rows, dim=0), torch.unique(full, dim=0))
    # labels travel with their images
    target = torch.from_numpy(load_digits().target)
    idx = [int((full == row).all(1).nonzero()[0]) for row in a.test[:20]]
    assert torch.equal(a.test_labels[:20], target[idx])
    assert a.binarization == "none" and a.info["data_seed"] == 0


def test_binarization_static_draws_fixed_dynamic_left_to_the_trainer():
    """A static training set and the test set are fixed Bernoulli draws (the data seed, not
    a run's seed: the data section has no seed); a dynamic one is left grey for the trainer
    to redraw every epoch."""
    s = data("digits", binarization="static")
    grey = data("digits")
    assert set(s.train.unique().tolist()) == set(s.test.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(s.train, data("digits", binarization="static").train)  # fixed
    assert s.info["train_binarization_seed"] != s.info["test_binarization_seed"]
    # a Bernoulli draw with p = grey value: mean close to the grey mean
    assert abs(s.train.mean().item() - grey.train.mean().item()) < 0.01
    assert abs(s.test.mean().item() - grey.test.mean().item()) < 0.02
    d = data("digits", binarization="dynamic")
    assert torch.equal(d.train, grey.train)  # the trainer redraws it each epoch
    assert torch.equal(d.test, s.test) and d.binarization == "dynamic"
    assert d.info["test_binarization_seed"] == s.info["test_binarization_seed"]


def test_user_array_file(tmp_path):
    x = np.random.default_rng(0).uniform(size=(50, 3, 4))
    np.save(tmp_path / "mine.npy", x)
    split = data("file", tmp_path / "mine.npy")
    assert split.data_dim == 12 and split.train.shape[0] + split.test.shape[0] == 50
    np.savez(tmp_path / "mine.npz", images=x[:, 0])
    assert data("file", tmp_path / "mine.npz").data_dim == 4
    for bad, match in (
        (x * 2, r"\[0, 1\]"),
        (np.full((5, 2), np.nan), "finite"),
        (np.zeros(5), "examples"),
    ):
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(DatasetError, match=match):
            data("file", tmp_path / "bad.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    with pytest.raises(DatasetError, match="cannot read"):
        data("file", tmp_path / "junk.npy")
    np.savez(tmp_path / "two.npz", a=x[:, 0], b=x[:, 1])
    with pytest.raises(DatasetError, match="exactly one"):
        data("file", tmp_path / "two.npz")
    with pytest.raises(DatasetError, match="needs --data-dir"):
        data("file")


def test_bad_names_and_options():
    with pytest.raises(DatasetError, match="unknown dataset"):
        data("cifar")
    with pytest.raises(DatasetError, match="binarization"):
        data("digits", binarization="sometimes")
    with pytest.raises(DatasetError, match="real-valued"):
        data("ppca", binarization="static")
    with pytest.raises(DatasetError, match="data-dir"):
        data("mnist")


def write_idx(path, arr, compress=False):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


def test_mnist_from_idx_files_and_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    train, test = rng.integers(0, 256, (30, 28, 28)), rng.integers(0, 256, (10, 28, 28))
    write_idx(tmp_path / "train-images-idx3-ubyte", train)
    with pytest.raises(DatasetError, match="missing MNIST files.*t10k-images.*yann.lecun"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    x_train, x_test, y_train, y_test = load_mnist(tmp_path)  # labels are optional
    assert x_train.shape == (30, 784) and x_test.shape == (10, 784)
    assert y_train is None and y_test is None
    torch.testing.assert_close(
        x_test[3], torch.tensor(test[3].reshape(-1) / 255.0, dtype=torch.float32)
    )
    labels = rng.integers(0, 10, 10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels)
    assert load_mnist(tmp_path)[3].tolist() == labels.tolist()
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(10, 200))  # garbage labels
    with pytest.raises(DatasetError, match="does not label"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:7])  # wrong count
    with pytest.raises(DatasetError, match="does not label"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28)))  # no images
    with pytest.raises(DatasetError, match="N >= 1"):
        load_mnist(tmp_path)
    # truncated file
    write_idx(tmp_path / "t10k-images-idx3-ubyte", test)
    raw = (tmp_path / "t10k-images-idx3-ubyte").read_bytes()
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match="truncated"):
        load_mnist(tmp_path)


def test_gz_with_wrong_checksum_is_refused(tmp_path):
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(10), compress=True)
    from vaebook.vae.data import find_mnist_file

    with pytest.raises(DatasetError, match="checksum"):
        find_mnist_file(tmp_path, "t10k-labels-idx1-ubyte")


@pytest.mark.skipif(
    not (LOCAL_MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="real MNIST test files absent"
)
def test_real_mnist_test_files_if_present():
    from vaebook.vae.data import find_mnist_file

    images = read_idx(find_mnist_file(LOCAL_MNIST, "t10k-images-idx3-ubyte"))
    labels = read_idx(find_mnist_file(LOCAL_MNIST, "t10k-labels-idx1-ubyte"))
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist()[:2] == [980, 1135]  # the published class counts


def ppca_covariance(w, sigma2):
    """W W^T + sigma2 I as a NumPy array (the model's definition, not its density)."""
    w = np.asarray(w, dtype=float)
    return w @ w.T + sigma2 * np.eye(w.shape[0])


def test_ppca_log_likelihood_matches_scipy():
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.randn(40, 5, generator=gen)  # (N, D) float32: converted to float64
    mean = torch.randn(5, generator=gen, dtype=torch.float64)  # (D,)
    w = torch.randn(5, 2, generator=gen, dtype=torch.float64)  # (D, L)
    ours = ppca_log_likelihood(x, mean, w, 0.3)  # (N,)
    ref = stats.multivariate_normal(mean.numpy(), ppca_covariance(w, 0.3)).logpdf(x.double())
    assert ours.dtype == torch.float64 and ours.shape == (40,)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-10)


def test_ppca_mle_recovers_the_generator():
    x, params = make_ppca(n=20000, data_dim=6, latent_dim=2, noise_std=0.4, seed=0)
    mean, w, sigma2 = ppca_mle(x, 2)
    assert sigma2 == pytest.approx(0.16, rel=0.05)
    # same covariance as the generator, up to the rotation of W
    torch.testing.assert_close(w @ w.T, params["W"] @ params["W"].T, atol=0.15, rtol=0.05)
    torch.testing.assert_close(mean, params["b"], atol=0.05, rtol=0)


@pytest.mark.parametrize("latent_dim", [1, 2, 3])
def test_ppca_mle_matches_scikit_learn_probabilistic_pca(latent_dim):
    """scikit-learn's PCA fits the same model by SVD; its covariance uses 1/(N - 1)."""
    x, _ = make_ppca(n=300, data_dim=6, latent_dim=2, noise_std=0.5, seed=2)
    n = x.shape[0]
    mean, w, sigma2 = ppca_mle(x, latent_dim)
    pca = PCA(n_components=latent_dim).fit(x.double().numpy())
    np.testing.assert_allclose(mean.numpy(), pca.mean_, rtol=0, atol=1e-12)
    assert sigma2 == pytest.approx(pca.noise_variance_ * (n - 1) / n, rel=1e-10)
    np.testing.assert_allclose(
        ppca_covariance(w, sigma2), pca.get_covariance() * (n - 1) / n, rtol=0, atol=1e-10
    )


def test_ppca_mle_is_the_numerical_maximum_of_the_likelihood():
    """Maximise the scipy log-likelihood over (mean, W, log sigma2) from a random start:
    the optimum is the closed-form one (pPCA has no local maxima besides the global one)."""
    D, L = 4, 2
    x, _ = make_ppca(n=400, data_dim=D, latent_dim=L, noise_std=0.6, seed=5)
    x64 = x.double().numpy()

    def negative_mean_log_likelihood(theta):
        mean, w, log_s2 = theta[:D], theta[D:-1].reshape(D, L), theta[-1]
        cov = ppca_covariance(w, np.exp(log_s2))
        return -stats.multivariate_normal(mean, cov).logpdf(x64).mean()

    start = np.random.default_rng(0).standard_normal(D + D * L + 1)
    res = optimize.minimize(negative_mean_log_likelihood, start, method="BFGS", tol=1e-10)
    best = ppca_mle_log_likelihood(x, L)
    assert -res.fun <= best + 1e-9  # nothing beats the closed form
    assert -res.fun == pytest.approx(best, abs=1e-6)
    mean, w, sigma2 = ppca_mle(x, L)
    np.testing.assert_allclose(res.x[:D], mean.numpy(), rtol=0, atol=1e-5)
    assert np.exp(res.x[-1]) == pytest.approx(sigma2, rel=1e-6)
    w_num = res.x[D:-1].reshape(D, L)  # the optimiser's W is the MLE up to a rotation
    np.testing.assert_allclose(w_num @ w_num.T, (w @ w.T).numpy(), rtol=0, atol=1e-5)
    # and the value ppca_mle_log_likelihood reports is scipy's log-likelihood at the MLE
    ref = stats.multivariate_normal(mean.numpy(), ppca_covariance(w, sigma2)).logpdf(x64).mean()
    assert best == pytest.approx(ref, abs=1e-10)


def test_ppca_dataset_split():
    split = data("ppca")
    assert split.train.shape[1] == 10 and split.train.dtype == torch.float32
    assert "true_params" in split.info
