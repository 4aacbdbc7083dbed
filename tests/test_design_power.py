"""What the design grid can detect (analysis/design_power.py): its questions' standard errors on the
complete grid, the t-test's power against simulation of the analysis itself, the σ proxies on planted
run tables, and the numbers docs/protocol.md states from the committed reproduction."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import states_in_order

from analysis import design, design_power

ROOT = Path(__file__).resolve().parents[1]
REPRODUCE = ROOT / "results" / "examples" / "reproduce"
FAMILIES = ("dense1", "dense4", "conv1", "conv2", "conv4")


def test_each_question_s_standard_error_is_its_raw_cell_means_in_the_balanced_grid():
    f = design_power.se_factors().set_index("part")
    assert (f["df"] == 8).all() and len(f) == 10  # 27 cells − 19 terms; the family's ten questions
    # a direction: the mean of 9 cells minus the mean of 9 others
    assert f.loc["encoder dense1 − conv2", "se_factor"] == pytest.approx(math.sqrt(2 / 9))
    assert f.loc["decoder res2 − dense1", "se_factor"] == pytest.approx(math.sqrt(2 / 9))
    # dense1's gap at a level (3 cells against 6) minus the same at none: 2 × (1/3 + 1/6)
    assert f.loc["dense1's encoder gap, batch − none", "se_factor"] == pytest.approx(1.0)
    # the conv2 − dense1 decoder gap (3 cells against 3) at a level minus at none: 2 × (1/3 + 1/3)
    assert f.loc["decoder gap conv2 − dense1, layer − none", "se_factor"] == pytest.approx(math.sqrt(4 / 3))


def test_the_detectable_gap_is_detected_as_often_as_stated_by_the_analysis_itself():
    # planted: dense1 encoders worse by the gap the Holm worst case detects with 80 % power at σ = 1
    se = math.sqrt(2 / 9)
    alpha = design_power.ALPHA / 10
    delta = design_power.detectable(se, 8, alpha)
    assert design_power.power(delta, se, 8, alpha) == pytest.approx(0.8, abs=1e-6)
    g = design.grid(pd.DataFrame({k: v * 9 for k, v in design_power.LEVELS.items()}))
    w = next(q[4] for q in design.questions(g) if q[1] == "encoder dense1 − conv2")
    rng = np.random.default_rng(5)
    reps, hits = 400, 0
    for _ in range(reps):
        c = g.assign(y=delta * g["enc"].eq("dense1") + rng.normal(size=len(g)), n=1)
        hits += design.Model(c).contrast(w)["p_value"] < alpha
    # 0.8 with a binomial SE of 0.02 over 400 simulations: 4 SE either way
    assert abs(hits / reps - 0.8) < 0.08, hits / reps
    # and no gap, the test's own level (its p at most alpha as often as alpha says)
    assert design_power.power(0.0, se, 8, alpha) == pytest.approx(alpha)


def planted_runs(seed_sd: float, gamma: float) -> pd.DataFrame:
    """Runs at latent 50 (three seeds: mean − s, mean, mean + s) whose configuration means are main
    effects plus gamma × a pattern orthogonal to them, and runs the proxies must ignore."""
    a = np.array([2.0, -1.0, -1.0, 0.0, 0.0])  # zero-sum, so a_i b_j has no main effect
    b = np.array([1.0, 0.0, -1.0, 1.0, -1.0])
    rows = []
    for (i, e), (j, d) in itertools.product(enumerate(FAMILIES), enumerate(FAMILIES)):
        mean = 90.0 + 3 * i - 2 * j + gamma * a[i] * b[j]
        for seed, dev in enumerate((-seed_sd, 0.0, seed_sd)):
            rows.append({"status": "ok", "latent_dim": 50, "family/encoder": e, "family/decoder": d,
                         "seed": seed, "test/distortion": mean + dev})  # fmt: skip
        rows.append({"status": "diverged", "latent_dim": 50, "family/encoder": e, "family/decoder": d,
                     "seed": 9, "test/distortion": 1e6})  # fmt: skip
        rows.append({"status": "ok", "latent_dim": 25, "family/encoder": e, "family/decoder": d,
                     "seed": 0, "test/distortion": 1e3 * i})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_sigma_proxies_recover_a_planted_seed_noise_and_interaction():
    s = design_power.sigmas(planted_runs(seed_sd=0.7, gamma=0.5))
    assert s["seed noise"] == pytest.approx(0.7)  # each configuration's seeds: SD exactly s
    pattern = np.outer([2.0, -1.0, -1.0, 0.0, 0.0], [1.0, 0.0, -1.0, 1.0, -1.0])
    assert s["interaction"] == pytest.approx(0.5 * math.sqrt((pattern**2).sum() / 16))  # 25 − 9 df
    assert design_power.sigmas(planted_runs(seed_sd=0.7, gamma=0.0))["interaction"] == pytest.approx(0.0, abs=1e-9)


def test_a_missing_run_table_or_one_seed_is_one_error_line_and_exit_2(tmp_path, capsys):
    assert design_power.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "runs.csv" in err[0]
    one_seed = planted_runs(0.7, 0.5)
    one_seed[one_seed["seed"].ne(1)].to_csv(tmp_path / "runs.csv", index=False)  # seed 0 and 2: still several
    assert design_power.main([str(tmp_path)]) == 0
    capsys.readouterr()
    one_seed[one_seed["seed"].eq(0)].to_csv(tmp_path / "runs.csv", index=False)  # a single-seed sweep
    assert design_power.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "0 with several seeds" in err[0] and "valid: results/examples/reproduce" in err[0]


@pytest.mark.skipif(not (REPRODUCE / "runs.csv").is_file(), reason="no committed reproduction report")
def test_protocol_states_the_design_s_detectable_gaps_from_the_committed_reproduction():
    t = design_power.table(pd.read_csv(REPRODUCE / "runs.csv"))
    text = " ".join((ROOT / "docs" / "protocol.md").read_text().split())
    start = text.index("What the design grid can detect")
    para = text[start : text.index("python -m analysis.design_power", start)]
    s = t.drop_duplicates("sigma_from").set_index("sigma_from")["sigma"]
    want = [s["seed noise"], s["interaction"]]

    def span(part, col):
        v = t[t["part"].str.startswith(part)][col]
        return [v.min(), v.max()]

    want += span("encoder dense1", "detectable_holm") + span("dense1's encoder gap, batch", "detectable_holm")
    want += span("decoder gap conv2", "detectable_holm")
    # and the scale it is set against: C5a at seed 0, C4's conv2 − dense1 gap on three seeds
    seed0, three = (pd.read_csv(REPRODUCE / d / "claims.csv") for d in ("seed0", "."))
    c5a = seed0[seed0["claim"].eq("C5a") & seed0["decides"].astype(bool)]["statistic"].iloc[0]
    c4 = three[three["part"].eq("dense1 vs conv2") & three["metric"].eq("test/distortion")]["statistic"].iloc[0]
    want += [c5a, abs(c4)]  # written as a positive gap: dense1 worse by it
    assert states_in_order(para, [float(w) for w in want]) is None, (para, want)
