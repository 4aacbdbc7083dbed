"""analysis.capacity: the architecture-or-capacity model on run tables with a planted family effect or
a planted capacity effect, and on designs that cannot separate the two."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from synthetic import DECODER_EFFECT, planted_table

import analysis
from analysis import capacity
from sweep.provenance import cpu_info

C4, C5 = capacity.QUANTITIES["C4"], capacity.QUANTITIES["C5"]


def rows(table, model, quantity, response="test/distortion"):
    got = table[table["model"].eq(model) & table["quantity"].eq(quantity) & table["response"].eq(response)]
    assert len(got) == 1
    return got.iloc[0]


def with_elbo(runs):
    return runs.assign(**{"test/neg_elbo": runs["test/distortion"] + 25.0})


def test_a_planted_family_effect_survives_the_capacity_control():
    table = capacity.capacity_table(with_elbo(planted_table(np.random.default_rng(0), shift=3.0)))
    ctl = rows(table, "families + capacity", C4)
    # dense1 is 3 nats better than the other encoders (whose own effects are 0): the contrast is −3
    assert ctl["ci_low"] <= -3.0 <= ctl["ci_high"] and ctl["ci_high"] < 0 and ctl["n"] == 300
    assert "cluster-robust SEs over 100 configurations" in ctl["note"]
    text = capacity.summary(table)
    assert any(t.startswith("C4 (test/distortion)") and "survives the capacity control" in t for t in text)
    assert any(t.startswith("C4 (test/neg_elbo)") for t in text) and len(text) == 5
    assert text[0].startswith("Identifiability") and "description only" in text[0]


def _design(table, what):
    got = table[table["response"].eq(capacity.DESIGN) & table["quantity"].str.startswith(what)]
    return dict(zip(got["quantity"].str.split("/").str[-1], got["estimate"], strict=True)), got


def test_identifiability_and_matching_are_measured_from_the_parameter_counts():
    runs = with_elbo(planted_table(np.random.default_rng(0), shift=3.0))
    # fixed widths: a count per family × latent cell, so the capacity slopes are not identified
    r2, got = _design(capacity.capacity_table(runs), "R²")
    assert r2["encoder"] == pytest.approx(1.0) and r2["decoder"] == pytest.approx(1.0)
    assert got["note"].str.startswith("not identified").all()
    # counts that vary within a cell (as widths drawn per run would) are identified
    gen = np.random.default_rng(1)
    jitter = runs.assign(**{"params/encoder": runs["params/encoder"] * np.exp(gen.normal(0, 0.3, len(runs)))})
    r2, got = _design(capacity.capacity_table(jitter), "R²")
    assert r2["encoder"] < 0.9 and r2["decoder"] == pytest.approx(1.0)
    assert "encoder 0.8700 (identified), decoder 1.0000 (not identified)" in capacity.summary(
        capacity.capacity_table(jitter)
    )[0].replace(f"{r2['encoder']:.4f}", "0.8700")
    # every family of a role within ±5 % of one count per latent size: matched by design, said first
    latent = runs["latent_dim"].astype(float)
    codes = {f: i for i, f in enumerate(sorted(runs["family/encoder"].astype(str).unique()))}
    wobble = runs["family/encoder"].astype(str).map(lambda f: 1 + 0.01 * codes[f])
    matched = runs.assign(**{"params/encoder": 1e5 * latent * wobble, "params/decoder": 2e5 * latent})
    table = capacity.capacity_table(matched)
    spread, _ = _design(table, "spread")
    assert spread["encoder"] <= capacity.MATCHED_SPREAD and spread["decoder"] == pytest.approx(0.0)
    text = capacity.summary(table)
    assert text[0].startswith("Capacity is matched by design")
    # ... and with nothing for the capacity terms to control, no family effect "survives" them
    said = [t for t in text[1:] if t.startswith(("C4 (", "C5 ("))]
    assert len(said) == 4 and all("no survival is claimed" in t and "survive" not in t for t in said)
    # a 20 % spread is not matched
    wide = matched.assign(
        **{
            "params/encoder": matched["params/encoder"]
            * runs["family/encoder"].eq("dense1").map({True: 1.2, False: 1.0})
        }
    )
    spread, _ = _design(capacity.capacity_table(wide), "spread")
    assert spread["encoder"] > capacity.MATCHED_SPREAD


def test_a_capacity_effect_is_not_mistaken_for_a_family_effect():
    # distortion falls 3 nats per e-fold of encoder and of decoder parameters, on top of the planted
    # decoder effects. By family alone, C5's contrast is the planted one plus what the deep conv decoders'
    # parameter counts imply: slope × (mean log params of conv2, conv4 − mean over the others), averaged
    # over latent sizes (fewer parameters: about 1 nat worse); with the capacity terms it is the planted one
    slope = -3.0
    runs = with_elbo(planted_table(np.random.default_rng(1), capacity_slope=slope))
    table = capacity.capacity_table(runs)
    raw, ctl = rows(table, "families", C5), rows(table, "families + capacity", C5)
    deep = ["conv2", "conv4"]
    planted = np.mean([DECODER_EFFECT[d] for d in deep]) - np.mean(
        [v for d, v in DECODER_EFFECT.items() if d not in deep]
    )
    logp = np.log(runs.groupby(["latent_dim", "family/decoder"])["params/decoder"].first()).unstack()
    implied = slope * (logp[deep].mean(axis=1) - logp.drop(columns=deep).mean(axis=1)).mean()
    assert implied > 0.5
    assert (
        raw["ci_low"] <= planted + implied <= raw["ci_high"]
        and not raw["ci_low"] <= planted <= raw["ci_high"]
    )
    assert ctl["ci_low"] <= planted <= ctl["ci_high"]
    for key in ("enc", "dec"):
        got = rows(table, "families + capacity", capacity.QUANTITIES[key])
        assert got["ci_low"] <= slope <= got["ci_high"] and got["ci_high"] < 0
    # the encoder families have no planted effect: C4's controlled interval covers 0
    c4 = rows(table, "families + capacity", C4)
    assert c4["ci_low"] <= 0.0 <= c4["ci_high"]
    # ... as it does by family alone: there was no family effect for the control to remove
    raw4 = rows(table, "families", C4)
    assert raw4["ci_low"] <= 0.0 <= raw4["ci_high"]
    text = capacity.summary(table)
    (c4_text,) = [t for t in text if t.startswith("C4 (test/distortion)")]
    assert "no family effect to control" in c4_text and "survive" not in c4_text


@pytest.mark.parametrize(
    ("raw", "ctl", "said"),
    [
        ((-2.0, -1.0), (-2.0, -0.5), "survives the capacity control"),
        ((-2.0, -1.0), (-1.0, 0.5), "does not survive the capacity control"),
        ((-2.0, -1.0), (0.5, 1.0), "reverses"),
        ((-1.0, 0.5), (-1.0, 0.5), "no family effect to control"),
        ((0.5, 1.0), (-1.0, 0.5), "no family effect to control"),
        ((-1.0, 0.5), (-2.0, -1.0), "shows only with the capacity terms"),
        ((0.5, 1.0), (0.5, 2.0), "worse, by family alone and with the capacity terms"),
    ],
)
def test_the_control_s_verdict_speaks_of_an_effect_only_where_there_was_one(raw, ctl, said):
    def ci(lo_hi):
        return pd.Series({"estimate": sum(lo_hi) / 2, "ci_low": lo_hi[0], "ci_high": lo_hi[1]})

    assert said in capacity._verdict(ci(raw), ci(ctl))


def test_designs_that_cannot_separate_capacity_get_a_note_not_a_crash():
    runs = with_elbo(planted_table(np.random.default_rng(2), shift=3.0, seeds=(0,)))
    one = runs[runs["latent_dim"].eq(25)]  # one seed, one latent size: params are a function of the family
    table = capacity.capacity_table(one)
    ctl = rows(table, "families + capacity", C4)
    assert "one seed" in ctl["note"] and "one latent size" in ctl["note"] and "rank deficient" in ctl["note"]
    assert np.isfinite(ctl["estimate"]) and np.isnan(
        rows(table, "families + capacity", capacity.QUANTITIES["enc"])["estimate"]
    )
    assert any("cannot be fitted in full" in t for t in capacity.summary(table))
    # one encoder family: C4 has no contrast at all
    single = capacity.capacity_table(runs[runs["family/encoder"].eq("conv2")])
    assert (
        np.isnan(rows(single, "families", C4)["estimate"])
        and "one encoder family" in rows(single, "families", C4)["note"]
    )
    assert capacity.summary(capacity.capacity_table(runs.iloc[:0])) == [
        "No run has test metrics and parameter counts: no capacity model."
    ]


def test_one_seed_still_fits_with_the_seed_term_dropped():
    runs = with_elbo(planted_table(np.random.default_rng(3), shift=3.0, seeds=(0,)))
    ctl = rows(capacity.capacity_table(runs), "families + capacity", C4)
    assert "one seed: no seed fixed effect" in ctl["note"] and ctl["ci_high"] < 0
    assert ctl["estimate"] == pytest.approx(-3.0, abs=1.5)


def test_the_summary_speaks_for_each_protocol_group_of_a_grouped_table():
    # analysis.tables computes the capacity table per protocol group (rank.per_protocol), whose columns
    # come first: each group gets its own sentences, named, never a mix of two groups' rows
    runs = with_elbo(planted_table(np.random.default_rng(0), shift=3.0))
    parts = [capacity.capacity_table(runs).assign(epochs=e) for e in (10, 30)]
    grouped = pd.concat(parts, ignore_index=True)[["epochs", *capacity.COLUMNS]]
    text = capacity.summary(grouped)
    assert len(text) == 2 * len(capacity.summary(parts[0]))
    assert sum("epochs=10" in t for t in text) == sum("epochs=30" in t for t in text) == len(text) // 2


# --- the BLAS kernel pin (analysis/__init__.py): the capacity model's last digits follow the kernel ---

def _cpu_flags() -> set[str]:
    return set((cpu_info("flags") or "").split())


def _kernel_after_import(env_value: str | None) -> list[str]:
    """In a fresh interpreter: import analysis, then numpy and scipy; the OPENBLAS_CORETYPE it ends with
    and the kernel each OpenBLAS reports."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    if env_value is not None:
        env["OPENBLAS_CORETYPE"] = env_value
    code = (
        "import analysis, os, numpy, scipy.linalg\n"
        "from threadpoolctl import threadpool_info\n"
        "print(os.environ.get('OPENBLAS_CORETYPE'))\n"
        "print(*sorted({i['architecture'] for i in threadpool_info() if i['internal_api'] == 'openblas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not analysis.KERNEL_NEEDS <= _cpu_flags(), reason="the CPU cannot run the pinned kernel")
def test_importing_analysis_first_pins_one_openblas_kernel_on_any_x86_cpu_and_keeps_a_users_choice():
    assert _kernel_after_import(None) == [analysis.BLAS_KERNEL, analysis.BLAS_KERNEL]
    if "avx" in _cpu_flags():  # Sandybridge needs AVX: a user's own choice is kept, not overwritten
        assert _kernel_after_import("Sandybridge") == ["Sandybridge", "Sandybridge"]


def test_the_pin_is_only_set_where_it_takes_effect_and_the_cpu_runs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "placeholder")  # restored after the test, whatever happens
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.delitem(sys.modules, "numpy")  # as before numpy loads (restored after the test)
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx\n")  # no AVX2: the kernel would not run
    assert analysis.pin_blas_kernel(info) is None and "OPENBLAS_CORETYPE" not in os.environ
    assert analysis.pin_blas_kernel(tmp_path / "absent") is None and "OPENBLAS_CORETYPE" not in os.environ
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert analysis.pin_blas_kernel(info) == "Haswell" and os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Sandybridge")
    assert analysis.pin_blas_kernel(info) is None and os.environ["OPENBLAS_CORETYPE"] == "Sandybridge"
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    monkeypatch.setitem(sys.modules, "numpy", np)  # numpy loaded: too late to pin, so nothing is set
    assert analysis.pin_blas_kernel(info) is None and "OPENBLAS_CORETYPE" not in os.environ
