"""MNIST and Fashion-MNIST, bundled and checksummed, held whole as tensors on the training device.

The repository carries the four genuine files of each dataset (``data/mnist/*.gz``, CC BY-SA 3.0;
``data/fashion_mnist/*.gz``, MIT) with their SHA-256 sums. On first load they are checked,
decompressed into ``data/<dataset>/.cache/<MNIST|FashionMNIST>/raw`` and read with torchvision's own
reader; nothing is ever downloaded. ``data.name`` (``data=mnist`` or ``data=fashion_mnist``) picks one.

Splits: the 60k training images are split 50k/10k into train/validation by a seeded permutation
(``split_seed``, the same for every run so all runs see the same split); the 10k test images are the
test split. Likelihoods: ``bernoulli`` resamples a binarisation of each training batch
(:func:`binarize`) and uses one fixed seeded binarisation for validation and test; every other
likelihood (``bce``, the paper's setting, and the continuous ones of :mod:`sweep.losses`) keeps the
pixels k/255 as they are.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sweep.losses import LIKELIHOODS
from sweep.names import DEFAULT_DATASET

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
BUNDLED_ROOT = DATA_DIR / "mnist"
# data.name → torchvision's dataset class; the bundle is data/<data.name>/, with the IDX file names below.
DATASETS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(ValueError):
    """The data files are missing, corrupted or the data config is invalid."""


@dataclass(frozen=True)
class Split:
    """One split, resident on the device. ``x``: (N, 1, 28, 28) float32 in [0, 1]; ``y``: (N,) int64;
    ``target``: what the decoder must reconstruct for evaluation — ``x`` itself for ``bce``, a fixed
    seeded binarisation of it for ``bernoulli`` (training batches are re-binarised each step instead)."""

    x: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass(frozen=True)
class MNIST:
    train: Split
    val: Split
    test: Split
    split_seed: int
    likelihood: str
    dataset: str = DEFAULT_DATASET


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_sums(path: Path, names: list[str]) -> dict[str, str]:
    """``{file name: sha256}`` of a ``SHA256SUMS`` file (``<64 hex digits>  <name>`` per line) for
    each of ``names``; :class:`DataError` naming the file and the line that is not such a line, or the
    name it lacks."""
    sums = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise DataError(
                f"{path} line {number} is {line[:80]!r}; valid: '<64 hex digits>  <file name>' per line "
                "(restore the file from the repository)"
            )
        sums[parts[1]] = parts[0]
    missing = [n for n in names if n not in sums]
    if missing:
        raise DataError(
            f"{path} has no checksum for {missing[0]}; valid: a line for each of {', '.join(names)} "
            "(restore the file from the repository)"
        )
    return sums


def check_dataset(name: str) -> str:
    """``name`` if it is a bundled dataset, else :class:`DataError` naming the valid ones."""
    if name not in DATASETS:
        raise DataError(f"data.name={name!r} is unknown; valid: {', '.join(DATASETS)}")
    return name


def dataset_of(cfg) -> str:
    """The dataset of a run config: ``data.name``, ``mnist`` for configs stored before it existed."""
    return (cfg.get("data") or {}).get("name") or DEFAULT_DATASET


def root_of(name: str) -> Path:
    """The bundled directory of dataset ``name`` (``data/mnist``, ``data/fashion_mnist``)."""
    return DATA_DIR / check_dataset(name)


def verify_and_extract(root: Path = BUNDLED_ROOT, dataset: str = DEFAULT_DATASET) -> Path:
    """Check every bundled ``.gz`` against ``SHA256SUMS``, decompress it (atomically) into the cache,
    check the result against ``SHA256SUMS.raw``, and return the cache root that torchvision reads."""
    root = Path(root)
    sums_gz, sums_raw = root / "SHA256SUMS", root / "SHA256SUMS.raw"
    if not sums_gz.is_file() or not sums_raw.is_file():
        raise DataError(
            f"{dataset} checksum files missing under {root} (expected SHA256SUMS and SHA256SUMS.raw)"
        )
    names = [n for pair in FILES.values() for n in pair]
    want_gz, want_raw = _read_sums(sums_gz, [f"{n}.gz" for n in names]), _read_sums(sums_raw, names)
    raw_dir = root / ".cache" / DATASETS[check_dataset(dataset)] / "raw"
    for name in names:
        # the bundled file is what the repository vouches for: checked every time, even where its
        # decompressed cache matches (a corrupt .gz must not go unnoticed until the cache is rebuilt)
        gz = root / f"{name}.gz"
        if not gz.is_file():
            raise DataError(f"{dataset} file missing: {gz}")
        got = _sha256(gz)
        if got != want_gz[f"{name}.gz"]:
            raise DataError(
                f"checksum mismatch for {gz}: sha256 {got}, expected {want_gz[f'{name}.gz']} "
                f"(from {sums_gz}); restore the file from the repository"
            )
        raw = raw_dir / name
        if raw.is_file() and _sha256(raw) == want_raw[name]:
            continue
        raw_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=raw_dir, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(gz, "rb") as src:
                out.write(src.read())
            if _sha256(Path(tmp)) != want_raw[name]:
                raise DataError(f"decompressed {gz} does not match SHA256SUMS.raw")
            os.replace(tmp, raw)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return root / ".cache"


@functools.lru_cache(maxsize=4)
def load_uint8(root: str, dataset: str = DEFAULT_DATASET) -> tuple[torch.Tensor, ...]:
    """Read both splits with torchvision (cached per process; the tensors are never mutated)."""
    import torchvision.datasets

    reader = getattr(torchvision.datasets, DATASETS[check_dataset(dataset)])
    cache = verify_and_extract(Path(root), dataset)
    tr = reader(str(cache), train=True, download=False)
    te = reader(str(cache), train=False, download=False)
    return tr.data, tr.targets, te.data, te.targets


def check_data(dataset: str = DEFAULT_DATASET) -> None:
    """Verify the bundled files' checksums (raises :class:`DataError`); cached per process, and the
    cache is the one :func:`load_mnist` reads, so a run pays for it once."""
    load_uint8(str(root_of(dataset)), dataset)


def binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Dynamic binarisation: each pixel is 1 with probability equal to its intensity."""
    return torch.bernoulli(x, generator=generator)


def split_indices(n: int, val_size: int, split_seed: int) -> dict[str, torch.Tensor]:
    """The indices of the training images that form the train and validation splits: a permutation
    seeded by ``split_seed``, its first ``val_size`` for validation."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    return {"train": perm[val_size:], "val": perm[:val_size]}


@functools.lru_cache(maxsize=16)
def first_two_classes(dataset: str, val_size: int, split_seed: int) -> int | None:
    """How many of the train split's first images hold two classes (what the linear probe, fit on the
    first ``eval.probe_train`` of them, needs); None if the whole split holds one. From the labels
    of the bundled files (read once per process, as a run reads them)."""
    _, ytr, _, _ = load_uint8(str(root_of(dataset)), dataset)
    y = ytr[split_indices(len(ytr), val_size, split_seed)["train"]]
    other = (y != y[0]).nonzero()
    return int(other[0]) + 1 if len(other) else None


def load_mnist(
    device: torch.device | str = "cpu",
    *,
    likelihood: str = "bernoulli",
    val_size: int = 10_000,
    split_seed: int = 0,
    binarize_seed: int = 0,
    subset: int | None = None,
    root: str | Path | None = None,
    dataset: str = DEFAULT_DATASET,
) -> MNIST:
    """Load ``dataset`` (``mnist`` or ``fashion_mnist``, the same shapes and split sizes) onto
    ``device``. ``subset=N`` keeps the first N images of each split (after the seeded split), for smoke
    runs and tests."""
    check_dataset(dataset)
    if likelihood not in LIKELIHOODS:
        raise DataError(f"unknown likelihood {likelihood!r}; valid: {', '.join(LIKELIHOODS)}")
    if not 0 < val_size < 60_000:
        raise DataError(f"data.val_size={val_size} is out of range; valid: 1..59999")
    if subset is not None and subset < 1:
        raise DataError(f"data.subset={subset} is out of range; valid: null or an integer >= 1")
    xtr, ytr, xte, yte = load_uint8(str(Path(root) if root is not None else root_of(dataset)), dataset)
    idx = split_indices(xtr.shape[0], val_size, split_seed)
    gen = torch.Generator().manual_seed(binarize_seed)
    device = torch.device(device)

    def make(x8: torch.Tensor, y: torch.Tensor) -> Split:
        if subset is not None:
            x8, y = x8[:subset], y[:subset]
        x = (x8.float() / 255.0).unsqueeze(1)
        target = binarize(x, gen) if likelihood == "bernoulli" else x
        return Split(x.to(device), y.long().to(device), target.to(device))

    return MNIST(
        train=make(xtr[idx["train"]], ytr[idx["train"]]),
        val=make(xtr[idx["val"]], ytr[idx["val"]]),
        test=make(xte, yte),
        split_seed=split_seed,
        likelihood=likelihood,
        dataset=dataset,
    )


def load_data(cfg: dict[str, Any], device: torch.device | str) -> MNIST:
    """The dataset of the run config ``cfg`` (its ``data`` node), loaded onto ``device``."""
    dc = cfg["data"]
    return load_mnist(
        device,
        likelihood=dc["likelihood"],
        val_size=dc["val_size"],
        split_seed=dc["split_seed"],
        binarize_seed=dc["binarize_seed"],
        subset=dc["subset"],
        dataset=dataset_of(cfg),
    )
