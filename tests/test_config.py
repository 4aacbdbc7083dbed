"""Hydra configs: every experiment composes, validates and builds a model; grids have the documented
sizes; validate names the bad key and value; config identity ignores where and how a run is shown."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import sweep.config
from sweep.config import config_diff, identity, to_plain
from sweep.hydra_setup import register
from sweep.models import VAE, Spec
from sweep.rules import validate

register()  # these tests compose as sweep.train does

EXPERIMENTS = sorted(p.stem for p in (sweep.config.CONF_DIR / "experiment").glob("*.yaml"))


@pytest.fixture(scope="module")
def hydra_compose():
    with initialize_config_dir(config_dir=str(sweep.config.CONF_DIR), version_base="1.3"):
        yield lambda overrides=(), **kw: compose("config", overrides=list(overrides), **kw)


def sweep_params(hydra_compose, experiment: str) -> dict[str, list[str]]:
    """The experiment's sweeper axes, each a list of its comma-separated values ({} when not a grid)."""
    cfg = hydra_compose([f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    return {k: [v.strip() for v in str(params[k]).split(",")] for k in params}


def grid_points(axes: dict[str, list[str]]) -> list[list[str]]:
    """Enough grid points that every value of every axis appears at least once."""
    if not axes:
        return [[]]
    n = max(len(v) for v in axes.values())
    return [[f"{k}={v[i % len(v)]}" for k, v in axes.items()] for i in range(n)]


def build_and_run(plain: dict) -> None:
    vae = VAE(Spec(**plain["encoder"]), Spec(**plain["decoder"]), plain["latent_dim"])
    with torch.no_grad():
        logits, mu, logvar = vae(torch.zeros(2, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert logits.shape == (2, 1, 28, 28)
    assert mu.shape == logvar.shape == (2, plain["latent_dim"])
    assert torch.isfinite(logits).all()


def test_the_experiments_are_there():
    assert {"paper", "full", "smoke", "ref_pytorch_example", "ref_iwae"} <= set(EXPERIMENTS)


def test_default_config_validates_and_builds(hydra_compose):
    plain = to_plain(hydra_compose())
    assert validate(plain) is plain
    build_and_run(plain)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_validates_and_builds(hydra_compose, experiment):
    axes = sweep_params(hydra_compose, experiment)
    for point in grid_points(axes):
        cfg = hydra_compose([f"experiment={experiment}", *point])
        plain = to_plain(cfg)
        validate(plain)
        # the grid point really is what got composed
        for override in point:
            key, value = override.split("=", 1)
            if key in ("encoder", "decoder"):
                kind = value.rstrip("0123456789")
                assert (plain[key]["kind"], plain[key]["depth"]) == (kind, int(value[len(kind) :]))
            elif key == "norm":  # the group that sets both sides' norm
                assert plain["encoder"]["norm"] == plain["decoder"]["norm"] == value
            else:  # a dotted key (loss.reduction) addresses a nested value
                assert str(OmegaConf.select(OmegaConf.create(plain), key)) == value
        build_and_run(plain)


# ---------------------------------------------------------------- grid sizes


def grid_size(axes: dict[str, list[str]]) -> int:
    return len(list(itertools.product(*axes.values())))


def test_paper_grid(hydra_compose):
    axes = sweep_params(hydra_compose, "paper")
    assert set(axes) == {"latent_dim", "encoder", "decoder", "seed"}
    families = {"dense1", "dense4", "conv1", "conv2", "conv4"}
    assert set(axes["latent_dim"]) == {"25", "50", "100", "200"}
    assert set(axes["encoder"]) == set(axes["decoder"]) == families
    assert set(axes["seed"]) == {"0", "1", "2"}
    assert grid_size(axes) == 4 * 5 * 5 * 3 == 300
    assert all(len(v) == len(set(v)) for v in axes.values())  # no duplicated values


def test_full_grid(hydra_compose):
    axes = sweep_params(hydra_compose, "full")
    assert set(axes) == {"latent_dim", "encoder", "decoder", "seed"}
    families = {"dense1", "dense4", "dense16"} | {f"conv{n}" for n in range(1, 6)}
    assert set(axes["latent_dim"]) == {"25", "50", "100", "200"}
    assert set(axes["encoder"]) == set(axes["decoder"]) == families
    assert set(axes["seed"]) == {"0", "1", "2"}
    assert grid_size(axes) == 4 * 8 * 8 * 3 == 768
    assert all(len(v) == len(set(v)) for v in axes.values())


def test_smoke_grid_covers_dense_and_conv(hydra_compose):
    axes = sweep_params(hydra_compose, "smoke")
    for role in ("encoder", "decoder"):
        assert {v.rstrip("0123456789") for v in axes[role]} == {"dense", "conv"}
    plain = to_plain(hydra_compose(["experiment=smoke"]))
    assert plain["data"]["subset"] is not None and plain["batch_size"] <= plain["data"]["subset"]


# ---------------------------------------------------------------- reference experiments


def test_ref_pytorch_example(hydra_compose):
    plain = to_plain(hydra_compose(["experiment=ref_pytorch_example"]))
    assert plain["latent_dim"] == 20
    for role in ("encoder", "decoder"):
        assert plain[role] == {
            "kind": "dense",
            "depth": 1,
            "width": 400,
            "activation": "relu",
            "norm": "none",
        }
    assert plain["data"]["likelihood"] == "bce"
    assert plain["epochs"] == 10
    assert (plain["lr"], plain["batch_size"]) == (1e-3, 128)
    assert plain["loss"]["reduction"] == "sum"
    validate(plain)


def test_ref_iwae(hydra_compose):
    plain = to_plain(hydra_compose(["experiment=ref_iwae"]))
    assert plain["latent_dim"] == 50
    for role in ("encoder", "decoder"):
        assert plain[role] == {
            "kind": "dense",
            "depth": 2,
            "width": 200,
            "activation": "tanh",
            "norm": "none",
        }
    assert plain["data"]["likelihood"] == "bernoulli"
    validate(plain)


# ---------------------------------------------------------------- validate rejects bad values


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["lr=-1"], ["lr=-1", "> 0"]),
        (["lr=0"], ["lr=0", "> 0"]),
        (["epochs=0"], ["epochs=0", ">= 1"]),
        (["epochs=-2"], ["epochs=-2", ">= 1"]),
        (["epochs=1.5"], ["epochs=1.5", "integer"]),
        (["batch_size=0"], ["batch_size=0", ">= 1"]),
        (["data.subset=100", "batch_size=101"], ["batch_size=101", "100"]),
        (["data.subset=0"], ["data.subset=0", ">= 1"]),
        (["loss.beta=-1"], ["loss.beta=-1", ">= 0"]),
        (["loss.free_bits=-0.5"], ["loss.free_bits=-0.5", ">= 0"]),
        (["loss.warmup_epochs=-1"], ["loss.warmup_epochs=-1", ">= 0"]),
        (["epochs=3", "loss.warmup_epochs=3.5"], ["loss.warmup_epochs=3.5 is longer than the run (epochs=3)", "0..3"]),
        (["epochs=1", "loss.warmup_epochs=2"], ["loss.warmup_epochs=2 is longer than the run (epochs=1)"]),
        (["loss.reduction=mean"], ["loss.reduction='mean'", "sum", "paper"]),
        (["data.likelihood=gauss"], ["data.likelihood='gauss'", "bernoulli", "bce"]),
        (["seed=-1"], ["seed=-1", "0..4294967295"]),
        (["latent_dim=0"], ["latent_dim=0", ">= 1"]),
        (["encoder=conv", "encoder.depth=6"], ["encoder.depth=6", "1..5"]),
        (["decoder=conv5", "decoder.depth=6"], ["decoder.depth=6", "1..5"]),
        (["encoder.activation=swishy"], ["encoder.activation='swishy'", "leaky_relu"]),
        (["data.val_size=0"], ["data.val_size=0"]),
        (["data.val_size=60000"], ["data.val_size=60000", "1..59999"]),
        (["eval.iwae_k=0"], ["eval.iwae_k=0", ">= 1"]),
        (["eval.fid_samples=1"], ["eval.fid_samples=1", ">= 2"]),
        (["eval.kid_subset_size=1"], ["eval.kid_subset_size=1", ">= 2"]),
        (["eval.kid_subsets=0"], ["eval.kid_subsets=0", ">= 1"]),
        (["data.name=kmnist"], ["data.name='kmnist'", "mnist, fashion_mnist"]),
    ],
)
def test_validate_rejects(hydra_compose, overrides, needles):
    plain = to_plain(hydra_compose(overrides))
    with pytest.raises(ValueError) as err:
        validate(plain)
    for needle in needles:
        assert needle in str(err.value), (needle, str(err.value))


def test_validate_accepts_the_edges(hydra_compose):
    validate(to_plain(hydra_compose(["data.subset=100", "batch_size=100", "seed=0", "loss.beta=0"])))
    validate(to_plain(hydra_compose(["encoder=conv5", "decoder=conv5", "latent_dim=1", "epochs=1"])))
    validate(to_plain(hydra_compose(["epochs=3", "loss.warmup_epochs=3"])))  # β reached at the last step


def test_validate_rejects_non_finite_lr(hydra_compose):
    plain = to_plain(hydra_compose())
    plain["lr"] = math.inf
    with pytest.raises(ValueError, match="lr=inf"):
        validate(plain)


def test_run_name_resolver_validates(hydra_compose):
    cfg = hydra_compose(["lr=0"], return_hydra_config=True)
    with pytest.raises(Exception, match="lr=0"):
        _ = cfg.hydra.run.dir


# ---------------------------------------------------------------- identity and config_diff


def test_config_diff_sees_training_keys(hydra_compose):
    a = to_plain(hydra_compose())
    b = to_plain(hydra_compose(["epochs=20"]))
    assert config_diff(a, a) == []
    diff = config_diff(a, b)
    assert len(diff) == 1
    assert diff[0].startswith("epochs:") and "10" in diff[0] and "20" in diff[0]
    assert identity(a)["epochs"] == 10 and identity(b)["epochs"] == 20


def test_config_diff_sees_nested_and_group_changes(hydra_compose):
    a = to_plain(hydra_compose())
    b = to_plain(hydra_compose(["loss.beta=0.5", "encoder=conv2"]))
    keys = {line.split(":")[0] for line in config_diff(a, b)}
    assert {"loss.beta", "encoder.kind", "encoder.depth", "encoder.width"} <= keys


def test_config_diff_ignores_where_and_how_a_run_is_shown(hydra_compose):
    a = to_plain(hydra_compose())
    b = to_plain(hydra_compose(["results_dir=/elsewhere", "progress=false", "device=cpu"]))
    assert a != b
    assert config_diff(a, b) == []
    for key in ("results_dir", "progress", "device"):
        assert key not in identity(a)
    assert identity(a) == identity(b)


@pytest.mark.parametrize(
    "by_key, by_group",
    [
        (["encoder.kind=res"], ["encoder=res"]),
        (["encoder.kind=conv", "encoder.depth=2"], ["encoder=conv2"]),
        (["decoder.kind=dense"], ["decoder=dense"]),
        (["encoder=conv", "encoder.kind=dense"], ["encoder=dense"]),
        (["decoder=res2", "decoder.kind=conv"], ["decoder=conv2"]),
    ],
)
def test_a_kind_set_by_key_builds_the_model_its_group_builds(hydra_compose, by_key, by_group):
    # the run name holds no width: encoder.kind=res must not keep the dense group's 512 units as 512
    # channels under the name L25_res1_…, which sweep.rerun would rebuild at width 32
    a, b = (validate(to_plain(hydra_compose(o))) for o in (by_key, by_group))
    assert a == b


def test_an_explicit_width_outlives_a_kind_change(hydra_compose):
    cfg = validate(to_plain(hydra_compose(["encoder.kind=res", "encoder.width=48"])))
    assert cfg["encoder"]["width"] == 48
    stored = OmegaConf.to_yaml(OmegaConf.create(cfg))
    assert "default_width" not in stored  # a stored config holds the integer


def test_an_unknown_kind_is_named_with_the_valid_ones(hydra_compose):
    with pytest.raises(sweep.config.ConfigError, match=r"encoder\.kind='foo' is unknown; valid: dense, conv, res"):
        validate(to_plain(hydra_compose(["encoder.kind=foo"])))


def test_overrides_of_a_stored_config_change_a_kind_and_reach_keys_it_was_stored_without():
    old = {  # a run stored before the norm keys and data.name existed
        "latent_dim": 25,
        "encoder": {"kind": "dense", "depth": 1, "width": 512, "activation": "leaky_relu"},
        "decoder": {"kind": "conv", "depth": 4, "width": 40, "activation": "leaky_relu"},
        "data": {"likelihood": "bernoulli"},
    }
    cfg = sweep.config.apply_overrides(old, ["encoder.norm=batch", "data.name=fashion_mnist"])
    assert cfg["encoder"]["norm"] == "batch" and cfg["decoder"]["norm"] == "none"
    assert cfg["data"] == {"likelihood": "bernoulli", "name": "fashion_mnist"}
    assert sweep.config.apply_overrides(old, ["encoder.kind=res"])["encoder"]["width"] == 32
    assert sweep.config.apply_overrides(old, ["encoder={kind: conv, depth: 2}"])["encoder"]["width"] == 32
    assert sweep.config.apply_overrides(old, ["decoder.kind=conv"])["decoder"]["width"] == 40  # unchanged kind
    both = sweep.config.apply_overrides(old, ["encoder.kind=res", "encoder.width=24"])
    assert both["encoder"]["width"] == 24
    assert sweep.config.apply_overrides(old, ["decoder={kind: dense, width: 64}"])["decoder"]["width"] == 64
    # 40 is no default (a capacity-matched width): no width follows from a new kind, by key or group
    for override in ("decoder.kind=dense", "decoder={kind: dense}"):
        with pytest.raises(sweep.config.ConfigError, match=r"decoder\.width=40, not the conv default 32"):
            sweep.config.apply_overrides(old, [override])
    assert "norm" not in old["encoder"]  # the stored config itself is left alone
