"""Run names: config → name → config for the whole G1 grid, through Hydra, and the paper's spelling."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir

import sweep.config
from sweep.hydra_setup import register
from sweep.names import GRAMMAR, RunId, RunNameError, parse_run_name, run_name, run_name_of

register()  # these tests compose as sweep.train does

# docs/protocol.md "Grids": G1 = 4 latents × {DNN1, DNN4, DNN16, CNN1…CNN5}² × 3 seeds.
LATENTS = (25, 50, 100, 200)
FAMILIES = [("dense", 1), ("dense", 4), ("dense", 16)] + [("conv", n) for n in range(1, 6)]
SEEDS = (0, 1, 2)
FULL_GRID = [
    RunId(latent, ek, en, dk, dn, seed)
    for latent, (ek, en), (dk, dn), seed in itertools.product(LATENTS, FAMILIES, FAMILIES, SEEDS)
]
SAMPLE = FULL_GRID[::41]  # 19 points spread over every axis


def expected_name(r: RunId) -> str:
    return f"L{r.latent_dim}_{r.enc_kind}{r.enc_depth}_{r.dec_kind}{r.dec_depth}_s{r.seed}"


@pytest.fixture(scope="module")
def hydra_compose():
    with initialize_config_dir(config_dir=str(sweep.config.CONF_DIR), version_base="1.3"):
        yield lambda overrides, **kw: compose("config", overrides=overrides, **kw)


def test_full_grid_round_trips_and_names_are_unique():
    assert len(FULL_GRID) == 768
    names = []
    for r in FULL_GRID:
        name = run_name(r.latent_dim, r.enc_kind, r.enc_depth, r.dec_kind, r.dec_depth, r.seed)
        assert name == expected_name(r)
        assert r.name == name
        assert parse_run_name(name) == r
        names.append(name)
    assert len(set(names)) == 768


def test_sample_covers_every_axis():
    assert {r.latent_dim for r in SAMPLE} == set(LATENTS)
    assert {r.seed for r in SAMPLE} == set(SEEDS)
    assert {(r.enc_kind, r.enc_depth) for r in SAMPLE} == set(FAMILIES)
    assert {(r.dec_kind, r.dec_depth) for r in SAMPLE} == set(FAMILIES)


@pytest.mark.parametrize("rid", SAMPLE, ids=expected_name)
def test_hydra_family_shorthands_give_the_name(hydra_compose, rid):
    cfg = hydra_compose(
        [
            f"encoder={rid.enc_kind}{rid.enc_depth}",
            f"decoder={rid.dec_kind}{rid.dec_depth}",
            f"latent_dim={rid.latent_dim}",
            f"seed={rid.seed}",
        ]
    )
    plain = sweep.config.to_plain(cfg)
    assert run_name_of(plain) == expected_name(rid)
    assert parse_run_name(run_name_of(plain)) == rid


@pytest.mark.parametrize("rid", SAMPLE, ids=expected_name)
def test_hydra_run_id_overrides_give_the_name(hydra_compose, rid):
    plain = sweep.config.to_plain(hydra_compose(rid.overrides()))
    assert run_name_of(plain) == expected_name(rid)
    # the family default width comes along with the kind
    assert plain["encoder"]["width"] == {"dense": 512, "conv": 32}[rid.enc_kind]
    assert plain["decoder"]["width"] == {"dense": 512, "conv": 32}[rid.dec_kind]


def test_example_override_from_the_brief(hydra_compose):
    cfg = hydra_compose(["encoder=conv4", "decoder=dense16", "latent_dim=100", "seed=2"])
    assert run_name_of(sweep.config.to_plain(cfg)) == "L100_conv4_dense16_s2"


def test_hydra_dirs_use_the_run_name(hydra_compose):
    rid = RunId(50, "conv", 3, "dense", 4, 1)
    cfg = hydra_compose(rid.overrides(), return_hydra_config=True)
    assert cfg.hydra.sweep.subdir == expected_name(rid)
    assert cfg.hydra.run.dir.endswith("/" + expected_name(rid))


# ---------------------------------------------------------------- the paper's spelling


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("L25_DNN1_CNN4", RunId(25, "dense", 1, "conv", 4, 0)),
        ("L25_dnn1_cnn4", RunId(25, "dense", 1, "conv", 4, 0)),
        ("L25_Dnn1_cNn4", RunId(25, "dense", 1, "conv", 4, 0)),
        ("L200_CNN2_DNN16_s2", RunId(200, "conv", 2, "dense", 16, 2)),
        ("L50_DENSE4_Conv5", RunId(50, "dense", 4, "conv", 5, 0)),
        ("L25_dense1_conv4", RunId(25, "dense", 1, "conv", 4, 0)),
    ],
)
def test_paper_spelling_is_accepted(name, expected):
    rid = parse_run_name(name)
    assert rid == expected
    assert rid.name == expected_name(expected)  # written canonically


def test_latent_prefix_must_be_capital_l():
    with pytest.raises(RunNameError):
        parse_run_name("l25_dense1_conv4_s0")


# ---------------------------------------------------------------- bad names


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "L25",
        "L25_dense1",
        "L25_rnn1_conv4_s0",
        "X25_dense1_conv4",
        "L25_dense_conv4",
        "L25_dense1_conv4_sX",
        "L25_dense1_conv4_s",
        "L25_dense1_conv4_0",
        "L25_dense1_conv4_rnn2",
    ],
)
def test_bad_names_raise_with_the_grammar(bad):
    with pytest.raises(RunNameError) as err:
        parse_run_name(bad)
    assert GRAMMAR in str(err.value)
    assert repr(bad) in str(err.value)
