"""Sample quality (sweep/fid_kid.py): the cached feature classifiers, and FID/KID through torchmetrics
checked against a direct NumPy/SciPy computation."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from scipy import linalg
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

from sweep import fid_kid
from sweep.data import DataError, load_mnist


@pytest.fixture(scope="module")
def test_x() -> torch.Tensor:
    return load_mnist("cpu", likelihood="bce").test.x


@pytest.fixture(scope="module")
def features():
    return fid_kid.Features(fid_kid.load_classifier("mnist").net)


def _fid(features, real: torch.Tensor, fake: torch.Tensor) -> float:
    fid = FrechetInceptionDistance(feature=features)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


@pytest.mark.parametrize(
    "dataset",
    [pytest.param(d, marks=() if d == "mnist" else pytest.mark.slow) for d in fid_kid.ACCURACY_FLOOR],
)
def test_the_cached_classifier_has_the_test_accuracy_it_records(dataset):
    clf = fid_kid.load_classifier(dataset)  # checks the weights' SHA-256 against classifier.json
    data = load_mnist("cpu", likelihood="bce", dataset=dataset)
    acc = fid_kid.accuracy(clf.net, data.test.x, data.test.y)
    assert acc >= fid_kid.ACCURACY_FLOOR[dataset]
    assert acc == pytest.approx(clf.record["test_accuracy"], abs=fid_kid.ACCURACY_SLACK)
    assert clf.record["dataset"] == dataset and clf.record["train_images"] == 60_000


@pytest.mark.slow  # a minute on one core
def test_training_the_classifier_on_a_subset_learns_and_is_deterministic():
    # the recipe on 10,000 images for 2 epochs (the cached one: 60,000 images, 8 epochs) clears a looser
    # floor (measured 0.905 on the whole test set; chance is 0.10)
    net, acc = fid_kid.train_classifier("mnist", n_train=10_000, epochs=2, log=lambda _: None)
    assert acc >= 0.85
    again, _ = fid_kid.train_classifier("mnist", n_train=300, epochs=1, log=lambda _: None)
    twice, _ = fid_kid.train_classifier("mnist", n_train=300, epochs=1, log=lambda _: None)
    assert all(
        torch.equal(a, b)
        for a, b in zip(again.state_dict().values(), twice.state_dict().values(), strict=True)
    )


def test_a_corrupted_or_missing_classifier_is_named(tmp_path, monkeypatch):
    src = fid_kid.cache_dir("mnist")
    shutil.copytree(src, tmp_path / "classifier")
    monkeypatch.setattr(fid_kid, "cache_dir", lambda dataset: tmp_path / "classifier")
    monkeypatch.setattr(fid_kid, "_cache", {})
    weights = tmp_path / "classifier" / fid_kid.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=r"checksum mismatch for .*feature_cnn\.pt: sha256 [0-9a-f]{64}, expected"
    ):
        fid_kid.load_classifier("mnist")
    weights.unlink()
    with pytest.raises(DataError, match=r"classifier is missing .*python -m sweep.fid_kid train mnist"):
        fid_kid.load_classifier("mnist")


def test_another_datasets_classifier_copied_in_is_named(tmp_path, monkeypatch):
    shutil.copytree(fid_kid.cache_dir("mnist"), tmp_path / "classifier")  # MNIST's, as if Fashion's
    monkeypatch.setattr(fid_kid, "cache_dir", lambda dataset: tmp_path / "classifier")
    monkeypatch.setattr(fid_kid, "_cache", {})
    with pytest.raises(DataError, match=r"classifier\.json is the mnist feature classifier's record, not fashion_mnist's"):
        fid_kid.load_classifier("fashion_mnist")
    assert fid_kid.load_classifier("mnist").record["dataset"] == "mnist"  # its own dataset: loads


def test_fid_of_the_test_set_against_itself_is_zero_and_against_noise_large(features, test_x):
    x = test_x[:4000]
    same = _fid(features, x, x)
    # float64 statistics of identical features: what is left is the rounding of the matrix square root
    assert abs(same) < 1e-3
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    half = _fid(features, x[:2000], x[2000:])  # two samples of one distribution
    far = _fid(features, x, noise)
    assert far > 100 * half > 0


def test_torchmetrics_fid_and_kid_match_a_direct_numpy_scipy_computation(features, test_x):
    real, fake = test_x[:2000], test_x[2000:4000].flip(-1)  # mirrored digits: a different distribution
    fr, ff = (features(x).double().numpy() for x in (real, fake))

    # FID = |mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^1/2)  (Heusel et al. 2017)
    mu_r, mu_f = fr.mean(0), ff.mean(0)
    s_r, s_f = np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    with warnings.catch_warnings():  # units that never fire make the product singular: sqrtm says so
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(s_r @ s_f).real
    direct = float(((mu_r - mu_f) ** 2).sum() + np.trace(s_r + s_f - 2 * root))
    # both sides work in float64 on the same float32 features; they differ in the square-root algorithm
    # (eigenvalues vs Schur), which agree to ~1e-10 relative on these well-conditioned 128x128 matrices
    assert _fid(features, real, fake) == pytest.approx(direct, rel=1e-6)

    # KID = unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018); one subset that is the
    # whole set, so torchmetrics' random subset is a permutation, which the statistic ignores
    kid = KernelInceptionDistance(feature=features, subsets=1, subset_size=len(real))
    kid.update(real, real=True)
    kid.update(fake, real=False)
    got = float(kid.compute()[0])
    d, m = fr.shape[1], len(fr)
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(fr, fr), k(ff, ff), k(fr, ff)
    want = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    # torchmetrics sums float32 kernels: the kernel values (~mean kxx) carry float32's relative 6e-8,
    # amplified by sums of m^2 terms (m = 2000) at most ~m-fold: 1e-3 of a kernel value bounds it
    assert got == pytest.approx(want, abs=1e-3 * float(np.abs(kxx).mean()))
    assert want > 0


@pytest.mark.slow
def test_kid_is_unbiased_so_two_samples_of_one_distribution_can_score_below_zero(features, test_x):
    f = features(test_x)
    f = f[torch.randperm(len(f), generator=torch.Generator().manual_seed(0))]
    # 20 disjoint pairs of 250-image sets from the test set, scored with the kernel KID uses
    values = torch.stack([poly_mmd(f[i : i + 250], f[i + 250 : i + 500]) for i in range(0, 10_000, 500)])
    assert (values < 0).any() and (values > 0).any()
    assert abs(float(values.mean())) < 3 * float(values.std()) / len(values) ** 0.5  # centred on 0
    noise = features(torch.rand(250, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    assert float(poly_mmd(f[:250], noise)) > 10 * float(values.abs().max())


def test_the_meter_is_seeded_and_counts_its_images(test_x):
    meter = fid_kid.Meter("mnist", test_x[:1000], kid_subsets=10, kid_subset_size=5000)
    fake = test_x[1000:1500]
    a, b = meter.score(fake, fake, seed=0), meter.score(fake, fake, seed=0)
    assert a == b and meter.kid_subset_size == 1000
    assert (a["test/fid_samples"], a["test/fid_real"], a["test/kid_subset_size"]) == (500, 1000, 500)
    assert a["test/fid_prior"] == a["test/fid_recon"] > 0
    record = json.loads((fid_kid.cache_dir("mnist") / fid_kid.RECORD).read_text())
    assert a["test/fid_classifier"] == record["sha256"]
