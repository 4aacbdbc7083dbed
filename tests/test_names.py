"""Run names: config → name → config for the whole G1 grid, through Hydra, and the paper's spelling."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir

import sweep.config
from sweep.hydra_setup import register
from sweep.names import GRAMMAR, RunId, RunNameError, paper_label, parse_run_name, run_name, run_name_of

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


@pytest.mark.parametrize(
    ("rid", "label"),
    [
        (RunId(25, "dense", 1, "conv", 4), "L25_DNN1_CNN4"),
        (RunId(50, "res", 2, "conv", 2), "L50_RES2_CNN2"),  # the design grid's residual kind
        (RunId(50, "dense", 1, "res", 2), "L50_DNN1_RES2"),
    ],
)
def test_every_kind_has_a_paper_label_that_reads_back(rid, label):
    assert paper_label(rid.latent_dim, rid.enc_kind, rid.enc_depth, rid.dec_kind, rid.dec_depth) == label
    assert parse_run_name(label) == rid


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


# ---------------------------------------------------------------- norms and likelihoods in the name
DESIGN_NAMES = [
    (RunId(50, "res", 2, "conv", 4, 0, enc_norm="batch"), "L50_res2bn_conv4_s0"),
    (RunId(50, "dense", 1, "res", 2, 1, enc_norm="layer", dec_norm="group"), "L50_dense1ln_res2gn_s1"),
    (RunId(25, "conv", 2, "conv", 2, 0, likelihood="continuous_bernoulli"), "L25_conv2_conv2_s0_cb"),
    (RunId(25, "dense", 1, "conv", 4, 2, likelihood="gaussian"), "L25_dense1_conv4_s2_gauss"),
    (RunId(25, "dense", 1, "conv", 4, 0, likelihood="gaussian_learned"), "L25_dense1_conv4_s0_gausslearned"),
    (RunId(25, "res", 5, "res", 5, 0, 7, "batch", "batch", "logistic"), "L25_res5bn_res5bn_s0_logistic_t7"),
    (RunId(25, "dense", 1, "conv", 4, 0, likelihood="bce"), "L25_dense1_conv4_s0_bce"),
]


@pytest.mark.parametrize(("rid", "name"), DESIGN_NAMES, ids=[n for _, n in DESIGN_NAMES])
def test_a_non_default_norm_or_likelihood_shows_in_the_name_and_reads_back(hydra_compose, rid, name):
    assert rid.name == name and parse_run_name(name) == rid
    plain = sweep.config.to_plain(hydra_compose(rid.overrides()))
    assert run_name_of(plain) == name  # the overrides the name gives compose its configuration


def test_the_norm_axis_sets_both_sides_and_names_every_cell_apart(hydra_compose):
    names = set()
    for norm, enc, dec in itertools.product(
        ("none", "batch", "layer", "group"), ("dense1", "res2"), ("conv2", "res2")
    ):
        plain = sweep.config.to_plain(hydra_compose([f"norm={norm}", f"encoder={enc}", f"decoder={dec}"]))
        assert plain["encoder"]["norm"] == plain["decoder"]["norm"] == norm
        names.add(run_name_of(plain))
    assert len(names) == 16


def test_defaults_keep_the_names_of_configs_stored_before_norms_and_likelihoods():
    stored = {
        "latent_dim": 25,
        "seed": 0,
        "encoder": {"kind": "dense", "depth": 1},
        "decoder": {"kind": "conv", "depth": 4},
    }
    assert run_name_of(stored) == "L25_dense1_conv4_s0"
    assert run_name_of({**stored, "data": {"likelihood": "bernoulli"}}) == "L25_dense1_conv4_s0"
