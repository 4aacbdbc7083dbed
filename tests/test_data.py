"""The bundled MNIST: checksums, torchvision reading, the seeded split, binarisation, subsets."""

from __future__ import annotations

import shutil

import pytest
import torch

from sweep.data import BUNDLED_ROOT, DataError, binarize, load_mnist, root_of, verify_and_extract

# From data/mnist/README.md (counted independently when the files were bundled).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return load_mnist("cpu", likelihood="bernoulli")


def test_splits_are_50k_10k_10k_disjoint_and_complete(mnist):
    assert (len(mnist.train), len(mnist.val), len(mnist.test)) == (50_000, 10_000, 10_000)
    assert mnist.train.x.shape == (50_000, 1, 28, 28) and mnist.train.x.dtype == torch.float32
    counts = torch.bincount(torch.cat([mnist.train.y, mnist.val.y]), minlength=10).tolist()
    assert counts == TRAIN_COUNTS
    assert torch.bincount(mnist.test.y, minlength=10).tolist() == TEST_COUNTS
    assert mnist.train.x.mean().item() * 60_000 / 50_000 == pytest.approx(0.1307 * 60_000 / 50_000, abs=0.003)
    flat = lambda s: {bytes(r.to(torch.uint8).numpy()) for r in (s.x * 255).round().flatten(1)[:2000]}  # noqa: E731
    assert not flat(mnist.val) & flat(mnist.train)


def test_split_is_seeded_and_independent_of_the_run(mnist):
    again = load_mnist("cpu", likelihood="bernoulli")
    assert torch.equal(again.val.x, mnist.val.x) and torch.equal(again.val.target, mnist.val.target)
    other = load_mnist("cpu", likelihood="bernoulli", split_seed=1)
    assert not torch.equal(other.val.y, mnist.val.y)


def test_bernoulli_targets_are_a_fixed_binarisation_and_bce_targets_are_pixels(mnist):
    t = mnist.test.target
    assert set(t.unique().tolist()) == {0.0, 1.0}
    assert (t.mean() - mnist.test.x.mean()).abs() < 0.002  # E[bernoulli(x)] = x
    bce = load_mnist("cpu", likelihood="bce", subset=100)
    assert torch.equal(bce.test.target, bce.test.x)
    g = torch.Generator().manual_seed(0)
    a, b = binarize(mnist.test.x[:50], g), binarize(mnist.test.x[:50], g)
    assert not torch.equal(a, b)  # dynamic: a new draw every batch


def test_subset_keeps_the_first_n_of_each_split(mnist):
    small = load_mnist("cpu", likelihood="bernoulli", subset=123)
    assert (len(small.train), len(small.val), len(small.test)) == (123, 123, 123)
    assert torch.equal(small.train.x, mnist.train.x[:123])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"likelihood": "gauss"}, "unknown likelihood 'gauss'; valid: bernoulli, bce"),
        ({"val_size": 0}, "data.val_size=0 is out of range; valid: 1..59999"),
        ({"subset": 0}, "data.subset=0 is out of range"),
    ],
)
def test_bad_data_config_is_named(kwargs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_mnist("cpu", **kwargs)


def test_a_corrupted_file_fails_its_checksum_with_the_file_named(tmp_path):
    root = tmp_path / "mnist"
    shutil.copytree(BUNDLED_ROOT, root, ignore=shutil.ignore_patterns(".cache"))
    verify_and_extract(root)  # a good copy passes
    bad = root / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    shutil.rmtree(root / ".cache")
    with pytest.raises(
        DataError,
        match=r"checksum mismatch for .*t10k-labels-idx1-ubyte\.gz: sha256 [0-9a-f]{64}, expected b91679",
    ):
        verify_and_extract(root)
    assert not (root / ".cache" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").exists()


def test_a_tampered_decompressed_cache_is_rebuilt_from_the_bundled_file(tmp_path):
    root = tmp_path / "mnist"
    shutil.copytree(BUNDLED_ROOT, root, ignore=shutil.ignore_patterns(".cache"))
    raw = verify_and_extract(root) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    good = raw.read_bytes()
    raw.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    verify_and_extract(root)
    assert raw.read_bytes() == good


def test_fashion_mnist_is_bundled_checked_and_read_like_mnist(tmp_path):
    # counts and mean from data/fashion_mnist/README.md (checked when the files were bundled)
    fm = load_mnist("cpu", likelihood="bernoulli", dataset="fashion_mnist")
    assert fm.dataset == "fashion_mnist" and (len(fm.train), len(fm.val), len(fm.test)) == (
        50_000,
        10_000,
        10_000,
    )
    assert torch.bincount(torch.cat([fm.train.y, fm.val.y]), minlength=10).tolist() == [6000] * 10
    assert torch.bincount(fm.test.y, minlength=10).tolist() == [1000] * 10
    mean = torch.cat([fm.train.x, fm.val.x]).mean().item()
    assert mean == pytest.approx(72.940 / 255, abs=1e-4)
    root = tmp_path / "fashion_mnist"
    shutil.copytree(root_of("fashion_mnist"), root, ignore=shutil.ignore_patterns(".cache", "classifier"))
    assert (verify_and_extract(root, "fashion_mnist") / "FashionMNIST" / "raw").is_dir()
    bad = root / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-1])
    shutil.rmtree(root / ".cache")
    with pytest.raises(
        DataError, match=r"checksum mismatch for .*train-labels-idx1-ubyte\.gz: .* expected a04f1713"
    ):
        verify_and_extract(root, "fashion_mnist")
    with pytest.raises(DataError, match=r"data.name='kmnist' is unknown; valid: mnist, fashion_mnist"):
        load_mnist("cpu", dataset="kmnist")


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """A copy of the MNIST bundle whose decompressed cache is already built and matches."""
    root = tmp_path_factory.mktemp("bundle") / "mnist"
    shutil.copytree(BUNDLED_ROOT, root, ignore=shutil.ignore_patterns(".cache", "classifier"))
    verify_and_extract(root)
    return root


def _flip_byte(path, at=100):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _replace_line(path, index, text):
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


# (what is done to a copy whose cache matches, the DataError's message): each names the file
BAD_BUNDLES = [
    (
        lambda r: _flip_byte(r / "t10k-labels-idx1-ubyte.gz"),
        r"checksum mismatch for .*/t10k-labels-idx1-ubyte\.gz: sha256 [0-9a-f]{64}, expected b91679",
    ),
    (
        lambda r: (r / "train-images-idx3-ubyte.gz").write_bytes(b""),
        r"checksum mismatch for .*/train-images-idx3-ubyte\.gz: sha256 e3b0c442",
    ),
    (
        lambda r: _replace_line(r / "SHA256SUMS", 1, "garbage"),
        r"/SHA256SUMS line 2 is 'garbage'; valid: '<64 hex digits>  <file name>' per line",
    ),
    (
        lambda r: _replace_line(r / "SHA256SUMS.raw", 0, "0fa7 t10k-images-idx3-ubyte"),
        r"/SHA256SUMS\.raw line 1 is '0fa7 t10k-images-idx3-ubyte'; valid: '<64 hex digits>",
    ),
    (
        lambda r: _replace_line(r / "SHA256SUMS", 3, "1787" * 16 + "  other-file.gz"),
        r"/SHA256SUMS has no checksum for train-labels-idx1-ubyte\.gz; valid: a line for each of",
    ),
]


@pytest.mark.parametrize(
    "spoil, message",
    BAD_BUNDLES,
    ids=["corrupt gz", "empty gz", "garbage sums line", "short digest", "a file without a sum"],
)
def test_a_bad_bundle_is_refused_by_its_file_even_where_the_decompressed_cache_matches(
    extracted, tmp_path, spoil, message
):
    root = tmp_path / "mnist"
    shutil.copytree(extracted, root)
    raw = root / ".cache" / "MNIST" / "raw"
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    spoil(root)
    with pytest.raises(DataError, match=message):
        verify_and_extract(root)
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before  # the cache is left as it was
