"""Sample quality: FID and KID in the feature space of a small CNN classifier trained by the harness.

    python -m sweep.fid_kid train mnist              # (re)train data/mnist/classifier/ (minutes on CPU)
    python -m sweep.fid_kid train fashion_mnist
    python -m sweep.fid_kid check                    # each cached classifier's checksum and test accuracy

Inception-v3 features (the usual FID) are made for 299×299 colour photographs; for 28×28 digits and
clothes the harness trains its own feature network once per dataset, deterministically (fixed seed,
data order and hyper-parameters, :data:`RECIPE`) on all 60,000 training images, and caches it under the
data directory: ``data/<dataset>/classifier/feature_cnn.pt`` (weights) and ``classifier.json`` (their
SHA-256, the test accuracy measured when it was trained, the recipe and versions). The cache is
committed, so runs never train it; loading checks the checksum. The features are the 128-d output of
the penultimate layer.

The distances are torchmetrics' ``FrechetInceptionDistance`` and ``KernelInceptionDistance`` with that
network as their custom ``feature`` module (``tests/test_fid_kid.py`` checks both against a direct
NumPy/SciPy computation). They are comparable between runs of one dataset scored with one classifier
(its checksum is stored in every row), never with Inception-based FIDs of natural images.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sweep import results
from sweep.data import DATASETS, DataError, load_uint8, root_of

FEATURES = 128
# The training recipe: everything that decides the weights (with the data and the torch version).
# Adam with its learning rate decayed to 0 along a cosine over all steps of the run.
RECIPE = {"seed": 0, "batch_size": 128, "lr": 1e-3, "schedule": "cosine"}
# Epochs per dataset. At a constant learning rate, 5 epochs gave 98.94 % on MNIST and 89.87 % on
# Fashion-MNIST, 8 epochs 98.93 % on MNIST: below the floors; the cosine decay is what closes the gap.
EPOCHS = {"mnist": 8, "fashion_mnist": 8}
# Test accuracy the cached classifier must have (the floors).
ACCURACY_FLOOR = {"mnist": 0.99, "fashion_mnist": 0.90}
# Recomputed on another CPU, float rounding may flip the argmax of a near-tie: up to 5 of the 10,000
# test images may change class against the recorded accuracy.
ACCURACY_SLACK = 5 / 10_000
CACHE_DIR = "classifier"
WEIGHTS, RECORD = "feature_cnn.pt", "classifier.json"
BATCH = 1000


class FeatureCNN(nn.Module):
    """3 × [3×3 conv + ReLU + 2×2 max-pool] (16, 32, 64 channels: 28→14→7→3), a 128-unit ReLU
    layer (the features) and a 10-way linear head: 98k parameters, 2 MFLOP-pairs per image, so 20,000
    images per run cost about a second on a CPU core. ``num_features`` tells torchmetrics the width."""

    num_features = FEATURES

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in ((1, 16), (16, 32), (32, 64)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64 * 3 * 3, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Features(nn.Module):
    """The feature extractor handed to torchmetrics: images (N, 1, 28, 28) in [0, 1] → (N, 128), always
    in eval mode and without gradients. It remembers its last input and output, so the FID and the KID
    metric updated with one batch tensor extract its features once."""

    num_features = FEATURES

    def __init__(self, net: FeatureCNN):
        super().__init__()
        self.net = net.eval()
        self._last: tuple[torch.Tensor, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> Features:  # torchmetrics may call .train(); stay in eval
        return super().train(False)

    def forget(self) -> None:
        self._last = None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._last is not None and self._last[0] is x:  # the reference held keeps id(x) unique
            return self._last[1]
        out = self.net.body(x.float())
        self._last = (x, out)
        return out


def cache_dir(dataset: str) -> Path:
    return root_of(dataset) / CACHE_DIR


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pixels(x8: torch.Tensor) -> torch.Tensor:
    return (x8.float() / 255.0).unsqueeze(1)


@torch.no_grad()
def accuracy(net: FeatureCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    hits = sum(
        int((net(x[i : i + BATCH]).argmax(1) == y[i : i + BATCH]).sum()) for i in range(0, len(x), BATCH)
    )
    return hits / len(x)


def train_classifier(
    dataset: str, *, n_train: int | None = None, epochs: int | None = None, log=print
) -> tuple[FeatureCNN, float]:
    """Train the feature CNN on the first ``n_train`` (all when None) training images of ``dataset``
    with :data:`RECIPE` (Adam with a cosine decay, cross-entropy, a seeded shuffle per epoch; the same calls give the same
    weights on one machine); returns it and its accuracy on the whole test set."""
    xtr8, ytr, xte8, yte = load_uint8(str(root_of(dataset)), dataset)
    n = len(xtr8) if n_train is None else n_train
    epochs = EPOCHS[dataset] if epochs is None else epochs
    x, y = _pixels(xtr8[:n]), ytr[:n].long()
    torch.manual_seed(RECIPE["seed"])  # the initial weights
    net = FeatureCNN()
    opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"])
    gen = torch.Generator().manual_seed(RECIPE["seed"])
    bs = RECIPE["batch_size"]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * -(-n // bs))
    for epoch in range(epochs):
        net.train()
        t0, total = time.perf_counter(), 0.0
        for idx in torch.randperm(n, generator=gen).split(bs):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"{dataset}: epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({time.perf_counter() - t0:.0f} s)")
    return net, accuracy(net, _pixels(xte8), yte.long())


def save_classifier(dataset: str, net: FeatureCNN, test_accuracy: float, n_train: int, epochs: int) -> Path:
    """Write the weights and their record (checksum, accuracy, recipe) atomically under the data dir."""
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    weights = buf.getvalue()
    out = cache_dir(dataset)
    record = {
        "dataset": dataset,
        "weights": WEIGHTS,
        "sha256": _sha256(weights),
        "test_accuracy": test_accuracy,
        "train_images": n_train,
        "recipe": {**RECIPE, "epochs": epochs},
        "architecture": "FeatureCNN (sweep/fid_kid.py): 3x[conv3x3+ReLU+maxpool] 16/32/64, Linear(576,128)+ReLU, Linear(128,10)",
        "torch_version": torch.__version__,
        "command": f"python -m sweep.fid_kid train {dataset}",
    }
    results.atomic_write_bytes(out / WEIGHTS, weights)
    results.atomic_write_bytes(out / RECORD, (json.dumps(record, indent=2) + "\n").encode())
    return out


@dataclass(frozen=True)
class Classifier:
    net: FeatureCNN
    record: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.record["sha256"]


_cache: dict[str, Classifier] = {}
_cache_lock = threading.Lock()


def load_classifier(dataset: str) -> Classifier:
    """The cached classifier of ``dataset`` (on the CPU), its checksum verified; cached per process.
    Raises :class:`~sweep.data.DataError` naming the file and the command that rebuilds it."""
    with _cache_lock:
        if dataset not in _cache:
            d = cache_dir(dataset)
            fix = f"rebuild it with `python -m sweep.fid_kid train {dataset}`"
            for path in (d / RECORD, d / WEIGHTS):
                if not path.is_file():
                    raise DataError(f"the {dataset} feature classifier is missing ({path}); {fix}")
            try:
                record = json.loads((d / RECORD).read_text())
                want = record["sha256"]
            except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the record it wrote
                raise DataError(
                    f"{d / RECORD} is not a classifier record ({type(exc).__name__}: {exc}); restore it "
                    f"from the repository or {fix}"
                ) from None
            if record.get("dataset", dataset) != dataset:  # another dataset's files copied in
                raise DataError(
                    f"{d / RECORD} is the {record['dataset']} feature classifier's record, not {dataset}'s: "
                    f"its FIDs would be measured in another dataset's features; restore it from the "
                    f"repository or {fix}"
                )
            weights = (d / WEIGHTS).read_bytes()
            if _sha256(weights) != want:
                raise DataError(
                    f"checksum mismatch for {d / WEIGHTS}: sha256 {_sha256(weights)}, expected "
                    f"{want} (from {d / RECORD}); restore it from the repository or {fix}"
                )
            net = FeatureCNN()
            try:
                net.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
            except Exception as exc:  # noqa: BLE001 - a record made to match other bytes: still one line
                reason = " ".join(str(exc).split())[:200]
                raise DataError(f"{d / WEIGHTS} does not load as the feature classifier ({reason}); {fix}") from None
            _cache[dataset] = Classifier(net.eval(), record)
        return _cache[dataset]


def check_classifier(dataset: str) -> None:
    """Raise :class:`~sweep.data.DataError` unless ``dataset``'s cached classifier loads (checksum)."""
    load_classifier(dataset)


# ---------------------------------------------------------------------------------------- distances
class Meter:
    """FID and KID of generated images against one fixed set of real images (a dataset's test images on
    one device), through torchmetrics with the cached classifier as feature extractor. The real
    features are extracted once (``reset_real_features=False``); :meth:`score` is serialised by a lock,
    so slots of the engine may share one meter."""

    def __init__(self, dataset: str, real: torch.Tensor, *, kid_subsets: int, kid_subset_size: int):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        clf = load_classifier(dataset)
        self.classifier_sha256 = clf.sha256
        self.n_real = len(real)
        self.kid_subsets, self.kid_subset_size = kid_subsets, min(kid_subset_size, self.n_real)
        self.features = feats = Features(clf.net)
        device = real.device
        self.fid = FrechetInceptionDistance(feature=feats, reset_real_features=False).to(device)
        with warnings.catch_warnings():  # "KID saves all extracted features": 10,000 × 128 floats here
            warnings.filterwarnings(
                "ignore", message=".*will save all extracted features", category=UserWarning
            )
            self.kid = KernelInceptionDistance(
                feature=feats,
                subsets=kid_subsets,
                subset_size=self.kid_subset_size,
                reset_real_features=False,
            ).to(device)
        self.lock = threading.Lock()
        self._update(real, real=True, metrics=(self.fid, self.kid))

    def _update(self, images: torch.Tensor, *, real: bool, metrics: tuple) -> None:
        for batch in images.split(BATCH):
            for m in metrics:  # the same batch tensor: Features extracts it once
                m.update(batch, real=real)
        self.features.forget()

    def _kid(self, seed: int) -> tuple[float, float]:
        with torch.random.fork_rng(devices=[]):  # KID draws its subsets with the global CPU generator
            torch.manual_seed(seed)
            mean, std = self.kid.compute()
        return float(mean), float(std)

    def score(self, samples: torch.Tensor, recons: torch.Tensor, seed: int) -> dict[str, Any]:
        """The quality columns of one run: ``samples`` (prior samples' decoder means) and ``recons``
        (decoder means at z = μ of the test images), each (N, 1, 28, 28) in [0, 1]."""
        with self.lock:
            self.fid.reset()  # the fake side only (reset_real_features=False)
            self.kid.reset()
            self.kid.subset_size = size = min(self.kid_subset_size, len(samples))
            # subsets as large as both sets are the sets themselves: one is enough (and its std is 0)
            self.kid.subsets = 1 if size == len(samples) == self.n_real else self.kid_subsets
            self._update(samples, real=False, metrics=(self.fid, self.kid))
            fid_prior, (kid, kid_std) = float(self.fid.compute()), self._kid(seed)
            self.fid.reset()
            self._update(recons, real=False, metrics=(self.fid,))
            return {
                "test/fid_prior": fid_prior,
                "test/kid_prior": kid,
                "test/kid_prior_std": kid_std,
                "test/fid_recon": float(self.fid.compute()),
                "test/fid_samples": len(samples),
                "test/fid_real": self.n_real,
                "test/kid_subset_size": self.kid.subset_size,
                "test/fid_classifier": self.classifier_sha256,
            }


_meters: dict[tuple, Meter] = {}
_meters_lock = threading.Lock()


def meter_for(dataset: str, real: torch.Tensor, *, kid_subsets: int, kid_subset_size: int) -> Meter:
    """One :class:`Meter` per dataset, test-set size, device and KID settings in this process, so a
    launch's runs share the real features. ``real`` must be the dataset's test images (``Split.x``):
    the first N of the test file whatever the split seed or likelihood, so those keys fix its content."""
    key = (dataset, tuple(real.shape), str(real.device), kid_subsets, kid_subset_size)
    with _meters_lock:
        if key not in _meters:
            _meters[key] = Meter(dataset, real, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size)
        return _meters[key]


# ---------------------------------------------------------------------------------------- command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweep.fid_kid", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train and cache a dataset's feature classifier")
    t.add_argument("dataset", choices=list(DATASETS))
    t.add_argument("--threads", type=int, help="torch CPU threads")
    sub.add_parser("check", help="verify each cached classifier's checksum and test accuracy")
    args = p.parse_args(argv)
    if args.cmd == "train":
        if args.threads:
            torch.set_num_threads(args.threads)
        t0 = time.perf_counter()
        net, acc = train_classifier(args.dataset)
        out = save_classifier(args.dataset, net, acc, 60_000, EPOCHS[args.dataset])
        print(f"{args.dataset}: test accuracy {acc:.4f}; {time.perf_counter() - t0:.0f} s; wrote {out}")
        floor = ACCURACY_FLOOR[args.dataset]
        if acc < floor:
            print(f"error: test accuracy {acc:.4f} is below the floor {floor}", file=sys.stderr)
            return 1
        return 0
    bad = 0
    for dataset in DATASETS:
        try:
            clf = load_classifier(dataset)
        except DataError as exc:
            print(f"{dataset}: {exc}", file=sys.stderr)
            bad += 1
            continue
        _, _, xte8, yte = load_uint8(str(root_of(dataset)), dataset)
        acc = accuracy(clf.net, _pixels(xte8), yte.long())
        ok = abs(acc - clf.record["test_accuracy"]) <= ACCURACY_SLACK and acc >= ACCURACY_FLOOR[dataset]
        bad += not ok
        print(
            f"{dataset}: sha256 {clf.sha256[:12]}…, test accuracy {acc:.4f} (recorded "
            f"{clf.record['test_accuracy']:.4f}, floor {ACCURACY_FLOOR[dataset]}): {'ok' if ok else 'BAD'}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
