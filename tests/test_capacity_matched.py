"""sweep.capacity and experiment=capacity_matched: every G0 family's width set per latent size so that
all encoders share one parameter count within ±5 %, all decoders another (docs/protocol.md
"Capacity-matched grid")."""

from __future__ import annotations

import itertools
import math

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import TINY_RUN, make_cfg, one_error_line, snapshot, train_in_process
from hydra import compose, initialize_config_dir
from omegaconf.errors import InterpolationResolutionError

from sweep import capacity
from sweep.capacity import G0_FAMILIES, G0_LATENTS, ROLES, TOLERANCE, CapacityError, matched_width, target
from sweep.config import CONF_DIR, apply_overrides, to_plain
from sweep.models import BUILDERS, DEFAULT_WIDTH, Spec, count_params
from sweep.names import run_name_of
from sweep.rerun import build_config
from sweep.rules import ConfigError, validate

FAMILIES = [f"{k}{d}" for k, d in G0_FAMILIES]


def recount(role: str, family: str, width: int, latent_dim: int) -> int:
    """The role's module built for real (weights allocated on the CPU), its parameters counted: not the
    meta-device count the rule itself uses."""
    kind, depth = split(family)
    return count_params(BUILDERS[kind][ROLES.index(role)](Spec(kind, depth, width), latent_dim))


def split(family: str) -> tuple[str, int]:
    kind = family.rstrip("0123456789")
    return kind, int(family[len(kind) :])


# ------------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("role, latent_dim, family", list(itertools.product(ROLES, G0_LATENTS, FAMILIES)))
def test_every_g0_family_is_within_tolerance_of_its_roles_target_and_at_its_nearest_width(
    role, latent_dim, family
):
    kind, depth = split(family)
    coarsest, goal = target(role, latent_dim)
    # the target is a count the coarsest family meets exactly, at its own matched width
    assert recount(role, coarsest, matched_width(role, *split(coarsest), latent_dim), latent_dim) == goal
    width = matched_width(role, kind, depth, latent_dim)
    count = recount(role, family, width, latent_dim)
    assert abs(count / goal - 1) <= TOLERANCE
    # no neighbouring integer width is nearer the target (counts grow with width)
    for other in (width - 1, width + 1):
        if other >= 1:
            assert abs(count - goal) <= abs(recount(role, family, other, latent_dim) - goal)


@pytest.mark.parametrize("role, latent_dim", list(itertools.product(ROLES, G0_LATENTS)))
def test_the_target_is_the_coarsest_familys_count_nearest_the_geometric_mean_of_the_defaults(
    role, latent_dim
):
    defaults = {kind: DEFAULT_WIDTH[kind] for kind in ("dense", "conv")}
    counts = [recount(role, f, defaults[split(f)[0]], latent_dim) for f in FAMILIES]
    anchor = math.exp(sum(map(math.log, counts)) / len(counts))
    coarsest, goal = target(role, latent_dim)
    kind, depth = split(coarsest)
    w = matched_width(role, kind, depth, latent_dim)

    def relative_step(family: str) -> float:  # count change for one width step near the anchor
        w0 = capacity.nearest_width(role, *split(family), latent_dim, anchor, "leaky_relu")
        return recount(role, family, w0 + 1, latent_dim) / recount(role, family, w0, latent_dim) - 1

    steps = {f: relative_step(f) for f in FAMILIES}
    assert max(steps, key=steps.get) == coarsest
    # nearest the anchor: the anchor lies within one width step of the target on either side
    assert recount(role, coarsest, w - 1, latent_dim) <= anchor <= recount(role, coarsest, w + 1, latent_dim)


BAD = [
    # (role, kind, depth, latent_dim, needles): conv5 is not in G0; its count steps ~10 % at width 19
    ("encoder", "conv", 5, 100, ["encoder conv5 at latent_dim=100", "nearest width 19", "+5.2%", "±5%"]),
    ("decoder", "conv", 5, 200, ["decoder conv5 at latent_dim=200", "nearest width 19", "+5.1%", "±5%"]),
    ("encoders", "conv", 4, 25, ["role 'encoders' is unknown; valid: encoder, decoder"]),
    ("encoder", "conv", 6, 25, ["encoder.depth=6 is out of range for conv; valid: 1..5"]),
    ("decoder", "dense", 1, 0, ["latent_dim=0 is out of range"]),
]


@pytest.mark.parametrize(
    "role, kind, depth, latent_dim, needles", BAD, ids=[f"{b[0]}-{b[1]}{b[2]}-L{b[3]}" for b in BAD]
)
def test_a_family_that_cannot_be_matched_is_refused_naming_role_family_latent_width_deviation(
    role, kind, depth, latent_dim, needles
):
    with pytest.raises(ValueError) as info:
        matched_width(role, kind, depth, latent_dim)
    for needle in needles:
        assert needle in str(info.value)


def test_the_tolerance_is_enforced_for_g0_families_too(monkeypatch):
    # with a tighter tolerance than conv2's encoder deviation at L200 (+1.2 %), it is refused
    monkeypatch.setattr(capacity, "TOLERANCE", 0.01)
    with pytest.raises(CapacityError, match=r"encoder conv2 at latent_dim=200 .* width 33 gives \+1\.2%"):
        matched_width("encoder", "conv", 2, 200)


def test_the_table_lists_every_role_latent_and_family_once():
    t = capacity.table()
    assert len(t) == len(ROLES) * len(G0_LATENTS) * len(FAMILIES)
    assert not t.duplicated(["role", "latent_dim", "family"]).any()
    assert (t.deviation.abs() <= TOLERANCE).all()
    assert (t.groupby(["role", "latent_dim"]).coarsest.sum() == 1).all()
    assert (t[t.coarsest].deviation == 0).all()


# ------------------------------------------------------------------------ experiment=capacity_matched
CASES = [(25, "dense1", "conv4"), (50, "conv4", "dense1"), (100, "conv1", "conv2"), (200, "dense4", "conv1")]


@pytest.mark.parametrize("latent_dim, enc, dec", CASES, ids=[f"L{c[0]}_{c[1]}_{c[2]}" for c in CASES])
def test_the_composed_experiment_holds_the_matched_integer_widths_and_the_plain_run_name(
    latent_dim, enc, dec
):
    cfg = make_cfg(
        "experiment=capacity_matched", f"latent_dim={latent_dim}", f"encoder={enc}", f"decoder={dec}", arch=[]
    )
    for role, family in (("encoder", enc), ("decoder", dec)):
        width = cfg[role]["width"]
        assert type(width) is int and width == matched_width(role, *split(family), latent_dim)
    assert cfg["sweep_name"] == "capacity_matched" and cfg["seed"] == 0
    assert run_name_of(validate(cfg)) == f"L{latent_dim}_{enc}_{dec}_s0"


def test_the_experiment_is_reproduce_with_only_widths_sweep_name_and_seeds_changed():
    def composed(experiment: str) -> dict:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        return {
            **to_plain(cfg),
            "seeds": cfg.hydra.sweeper.params.seed,
            "grid": dict(cfg.hydra.sweeper.params),
        }

    cap, rep = composed("capacity_matched"), composed("reproduce")
    differ = {k for k in cap.keys() | rep.keys() if cap.get(k) != rep.get(k)}
    assert differ == {"encoder", "decoder", "sweep_name", "seeds", "grid"}
    assert str(cap["seeds"]) == "0" and {k: v for k, v in cap["grid"].items() if k != "seed"} == {
        k: v for k, v in rep["grid"].items() if k != "seed"
    }


def test_an_unknown_role_in_the_resolver_is_one_clear_error():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=["experiment=capacity_matched", "encoder.width=${matched_width:encoders}"]
        )
    with pytest.raises(
        InterpolationResolutionError, match="role 'encoders' is unknown; valid: encoder, decoder"
    ):
        to_plain(cfg)


def test_a_family_that_cannot_be_matched_refuses_the_launch_in_one_line_writing_nothing(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "keep").write_text("x\n")
    before = snapshot(tmp_path)
    args = [
        "experiment=capacity_matched",
        f"results_dir={tmp_path}",
        *TINY_RUN,
        "latent_dim=100",
        "encoder=conv5",
    ]
    assert train_in_process(monkeypatch, *args) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.out + captured.err)
    assert (
        "encoder conv5 at latent_dim=100 cannot be capacity-matched: its nearest width 19 gives +5.2%" in line
    )
    assert snapshot(tmp_path) == before


def test_a_capacity_matched_run_trains_stores_its_widths_and_reruns_from_its_stored_config(
    tmp_path, monkeypatch
):
    # one job of the grid, launched as the experiment launches it, with the seconds-long settings
    args = [
        "experiment=capacity_matched",
        f"results_dir={tmp_path}",
        *TINY_RUN,
        "latent_dim=25",
        "encoder=conv4",
        "decoder=dense1",
        "eval.iwae_images=null",
    ]
    assert train_in_process(monkeypatch, *args) == 0
    run = tmp_path / "examples" / "capacity_matched" / "L25_conv4_dense1_s0"
    widths = {
        "encoder": matched_width("encoder", "conv", 4, 25),
        "decoder": matched_width("decoder", "dense", 1, 25),
    }
    stored = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert {role: stored[role]["width"] for role in ROLES} == widths
    row = pq.read_table(run / "run.parquet").to_pandas().iloc[0]
    assert {role: row[f"{role}.width"] for role in ROLES} == widths
    assert row["status"] == "ok"
    assert row["params/encoder"] == recount("encoder", "conv4", widths["encoder"], 25)
    cfg, source = build_config("L25_conv4_dense1_s0", [], tmp_path)
    assert source == str(run) and {role: cfg[role]["width"] for role in ROLES} == widths
    # the same launch again finds the run complete: its identity is the stored one
    before = snapshot(run)
    assert train_in_process(monkeypatch, *args) == 0
    assert snapshot(run) == before


RERUN_OVERRIDES = [
    ["encoder.depth=4"],  # conv2's matched width would be kept by conv4: a model matched to nothing
    ["latent_dim=100"],  # every family's matched width moves with the latent size
    ["encoder.kind=dense", "decoder={kind: conv, depth: 4}"],
    ["encoder.depth=1", "decoder.depth=4", "latent_dim=200"],
]


@pytest.mark.parametrize("overrides", RERUN_OVERRIDES, ids=["+".join(o) for o in RERUN_OVERRIDES])
def test_overrides_of_a_stored_capacity_matched_run_give_the_widths_the_experiment_composes(overrides):
    # a stored run of the grid (resolved: integer widths), changed as sweep.rerun changes it, must be
    # the config the experiment composes with the same overrides: its widths matched for the new family
    stored = make_cfg(
        "experiment=capacity_matched", "latent_dim=25", "encoder=conv2", "decoder=dense1", arch=[]
    )
    changed = apply_overrides(stored, overrides)
    composed = make_cfg(
        "experiment=capacity_matched", "latent_dim=25", "encoder=conv2", "decoder=dense1", *overrides, arch=[]
    )
    assert {r: changed[r] for r in ROLES} == {r: composed[r] for r in ROLES}
    assert changed["latent_dim"] == composed["latent_dim"]
    assert changed != stored


def test_a_stored_width_that_is_neither_default_nor_matched_stays_with_a_depth_change_and_a_new_family_without_one_is_refused(
    monkeypatch,
):
    stored = make_cfg(
        "experiment=capacity_matched", "latent_dim=25", "encoder=conv2", "decoder=dense1", arch=[]
    )
    stored["encoder"]["width"] = 41  # the user's own width: the depth changes, the width is theirs
    assert apply_overrides(stored, ["encoder.depth=3"])["encoder"]["width"] == 41
    assert apply_overrides(stored, ["latent_dim=50"])["encoder"]["width"] == 41
    with pytest.raises(
        ConfigError, match=r"encoder\.width=41, not the conv default 32 nor its capacity-matched"
    ):
        apply_overrides(stored, ["encoder.kind=dense"])
    # a matched width whose new family has none within the tolerance: refused, naming both
    stored["encoder"]["width"] = matched_width("encoder", "conv", 2, 25)
    real = capacity.matched_width

    def none_for_conv3(role, kind, depth, latent_dim, activation="leaky_relu"):
        if (kind, depth) == ("conv", 3):
            raise CapacityError(f"{role} conv3 at latent_dim={latent_dim} cannot be capacity-matched")
        return real(role, kind, depth, latent_dim, activation)

    monkeypatch.setattr(capacity, "matched_width", none_for_conv3)
    with pytest.raises(
        ConfigError,
        match=r"encoder conv3 at latent_dim=25: the stored encoder\.width=\d+ is the capacity-matched width of conv2",
    ):
        apply_overrides(stored, ["encoder.depth=3"])


def test_the_docs_and_the_experiments_header_give_the_rules_widths():
    text = (CONF_DIR.parent / "docs" / "protocol.md").read_text()
    t = capacity.table()
    for (role, latent), g in t.groupby(["role", "latent_dim"], sort=False):
        cells = " | ".join(f"{w}" for w in g.width)
        assert f"| {role} | {latent} | {cells} |" in text, (role, latent)
    header = (CONF_DIR / "experiment" / "capacity_matched.yaml").read_text()
    for (role, latent), g in t.groupby(["role", "latent_dim"], sort=False):
        widths = ", ".join(f"{f} {w}" for f, w in zip(g.family, g.width, strict=True))
        assert f"L{latent}: {widths} " in header, (role, latent)


def test_the_command_prints_the_table_and_help_says_what_it_prints(capsys):
    assert capacity.main([]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        "role",
        "latent_dim",
        "family",
        "width",
        "params",
        "target",
        "deviation",
        "coarsest",
    ]
    with pytest.raises(SystemExit) as exit_:
        capacity.main(["--help"])
    assert exit_.value.code == 0 and "capacity-matched width of every G0 family" in capsys.readouterr().out
