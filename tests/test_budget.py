"""analysis.budget: the claims recomputed per epoch from the validation records of a synthetic sweep,
the settling sentence, and the figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from synthetic import make_sweep

from analysis import budget, claims, pc_probe, units
from analysis.collect import load_sweep

SMALL = {"latents": (4, 8), "encoders": ("dense1", "conv2"), "decoders": ("dense1", "conv2")}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    return load_sweep(make_sweep(root, seeds=(0, 1), diverged=("L8_conv2_dense1_s1",), **SMALL))


@pytest.fixture(scope="module")
def table(sweep):
    return budget.budget_table(sweep)


def test_one_row_per_claim_and_epoch_then_the_test_split(sweep, table):
    assert list(table.columns) == budget.COLUMNS
    val = table[table["split"].eq("val")]
    assert sorted(val["epoch"].unique()) == [1, 2] and set(val["claim"]) == set(budget.BUDGET_CLAIMS)
    test = table[table["split"].eq("test")]
    assert test["claim"].tolist() == list(budget.BUDGET_CLAIMS) and set(test["epoch"]) == {2}
    c1 = table[table["claim"].eq("C1")]
    assert set(c1["n_runs"]) == {15} and set(c1["n_configs"]) == {8}  # 16 runs, the diverged one out
    # the test rows are the claims check of the stored evaluation (its deciding rows), on the table
    # analysis.figures gives it: with the 2-D PCA probe, so the Holm family is claims.csv's
    probed = pc_probe.with_pc2_probe(sweep)
    assert probed[pc_probe.COLUMN].notna().any()  # a member of the family here
    final = {v.claim: v for v in claims.deciding(claims.check_claims(probed))}
    for _, r in test.iterrows():
        want = final[r["claim"]].statistic
        assert r["verdict"] == final[r["claim"]].verdict
        assert (pd.isna(r["statistic"]) and want is None) or r["statistic"] == pytest.approx(want)
        assert (pd.isna(r["p_holm"]) and final[r["claim"]].p_holm is None) or r["p_holm"] == final[r["claim"]].p_holm


def test_epoch_statistics_come_from_the_validation_records(sweep, table):
    # the synthetic validation distortion at epoch 1 is the final one + 4 (dense1 encoders) or + 8 nats
    frame = budget.at_epoch(sweep.runs, budget.epochs_of(sweep), 1)
    ok = sweep.runs[sweep.runs["status"].eq("ok")].set_index("run_dir")
    fast = ok.loc[frame["run_dir"], "family/encoder"].eq("dense1").to_numpy()
    want = ok.loc[frame["run_dir"], "test/distortion"].to_numpy() + [4.0 if f else 8.0 for f in fast]
    assert frame["test/distortion"].to_numpy() == pytest.approx(want)
    assert frame["test/rate"].to_numpy() == pytest.approx(
        ok.loc[frame["run_dir"], "test/rate"].to_numpy() / 2
    )
    # C4 at epoch 1: conv2 − dense1 encoders' validation distortion, configuration means, matched on
    # (latent, decoder) and averaged over those cells
    u = units.config_means(frame).pivot_table(
        index=["latent_dim", "family/decoder"], columns="family/encoder", values="test/distortion"
    )
    c4 = table[table["claim"].eq("C4") & table["epoch"].eq(1) & table["split"].eq("val")].iloc[0]
    assert c4["statistic"] == pytest.approx((u["conv2"] - u["dense1"]).mean())
    # C1 counts: a validation KL below 1e-6 nats at epoch 1 is half the final rate below 1e-6
    c1 = table[table["claim"].eq("C1") & table["epoch"].eq(1)].iloc[0]
    assert c1["n_paper_collapsed"] == int((ok["test/rate"] / 2 < 1e-6).sum())


def rows(verdicts, test=None):
    out = [
        {"arm": "all", "claim": "C4", "epoch": e + 1, "split": "val", "verdict": v}
        for e, v in enumerate(verdicts)
    ]
    if test:
        out.append({"arm": "all", "claim": "C4", "epoch": len(verdicts), "split": "test", "verdict": test})
    return pd.DataFrame(out)


def test_settling_names_the_first_epoch_of_the_final_verdict():
    got = budget.settling(
        rows(
            ["inconclusive", "reproduced", "inconclusive", "reproduced", "reproduced", "reproduced"],
            test="reproduced",
        ).assign(statistic=1.0)
    )
    assert (
        got["C4"]
        == "C4: settles at epoch 4 of 6 (reproduced from then on); the test-split verdict is the same."
    )
    # held for the last 2 epochs only (fewer than HELD_EPOCHS = 3): not settled, as at the last one
    short = budget.settling(rows(["inconclusive"] * 4 + ["reproduced"] * 2).assign(statistic=1.0))["C4"]
    assert short == (
        "C4: does not settle within the budget: inconclusive at epoch 4, reproduced only from epoch 5 of 6 "
        "(held 2 epochs, fewer than 3)."
    )
    late = budget.settling(
        rows(["reproduced", "reproduced", "inconclusive"], test="reproduced").assign(statistic=1.0)
    )["C4"]
    assert "does not settle within the budget" in late and "the test-split verdict is reproduced" in late
    assert "settles at epoch 1 of 3" in budget.settling(rows(["reproduced"] * 3).assign(statistic=1.0))["C4"]
    two = budget.settling(rows(["reproduced"] * 2, test="reproduced").assign(statistic=1.0))["C4"]
    assert two == (
        "C4: cannot settle within a budget of 2 epochs (fewer than 3; reproduced at every epoch); the "
        "test-split verdict is the same."
    )
    untestable = budget.settling(rows(["inconclusive"] * 3).assign(statistic=float("nan")))["C4"]
    assert untestable.startswith("C4: not testable at any epoch")


def test_figure_and_report_section(sweep, tmp_path):
    png, pdf = budget.fig_claims_budget(sweep, tmp_path)
    assert png.read_bytes().startswith(b"\x89PNG") and pdf.read_bytes().startswith(b"%PDF")
    from matplotlib.text import Text

    shown = "\n".join(t.get_text() for t in budget.fig_claims_budget.__wrapped__(sweep).findobj(Text))
    # the synthetic runs train 2 epochs, fewer than HELD_EPOCHS: no verdict can show that it holds
    assert (
        "C4: cannot settle within a budget of 2 epochs" in shown.replace("\n", " ")
        and "C4: smallest gap" in shown
    )
    assert "needs a sweep directory" in "\n".join(
        t.get_text() for t in budget.fig_claims_budget.__wrapped__(sweep.runs).findobj(Text)
    )


def test_a_sweep_without_epoch_records_gives_an_empty_table(tmp_path):
    sw = load_sweep(make_sweep(tmp_path, seeds=(0,), latents=(4,), with_epochs=False))
    assert len(budget.budget_table(sw)) == 0


def test_an_arm_names_each_key_once():
    """Two datasets whose configurations share labels: data.name is both the dataset split and an id
    column; the arm says it once (it read ``data.name=fashion_mnist data.name=fashion_mnist``)."""
    rows = [
        {"label": f"L4_DNN1_CNN{i}", "data.name": name, "seed": 0, "latent_dim": 4}
        for name in ("mnist", "fashion_mnist")
        for i in (1, 2)
    ]
    got = [arm for arm, _ in budget.arms(pd.DataFrame(rows))]
    assert got == ["data.name=fashion_mnist", "data.name=mnist"]


def test_the_figure_of_two_arms_tells_their_points_apart(tmp_path):
    """Two arms' statistics share each panel (side by side at each epoch): each arm has its own marker,
    named in a legend, so a point is never read as the other arm's."""
    from matplotlib.collections import PathCollection

    arms = [
        make_sweep(tmp_path, seeds=(0,), sweep_name=f"abl_{r}", loss_reduction=r, **SMALL)
        for r in ("sum", "paper")
    ]
    fig = budget.fig_claims_budget.__wrapped__(load_sweep(arms))
    legends = {ax.get_legend().get_title().get_text(): ax.get_legend() for ax in fig.axes if ax.get_legend()}
    assert set(legends) == {"verdict", "arm (left to right)"}
    names = [t.get_text() for t in legends["arm (left to right)"].get_texts()]
    assert len(names) == 2 and {n.split("=")[-1] for n in names} == {"sum", "paper"}
    first = fig.axes[0]
    shapes = {
        tuple(map(tuple, c.get_paths()[0].vertices.round(3)))
        for c in first.collections
        if isinstance(c, PathCollection) and len(c.get_offsets()) == 2  # one arm's 2 validation epochs
    }
    assert len(shapes) == 2


EXAMPLES = Path(__file__).resolve().parents[1] / "results" / "examples"


@pytest.mark.parametrize(
    "report", sorted(p.parent for p in EXAMPLES.rglob("claims_budget.csv")), ids=lambda p: str(p.relative_to(EXAMPLES))
)
def test_committed_budget_test_rows_are_the_claims_tables_deciding_rows(report):
    # the test split's row of each claim is claims.csv's deciding row: one family, one Holm adjustment
    # (the 2-D PCA probe's row was missing from the budget's family: Holm 0.0048 against 0.005)
    got = pd.read_csv(report / "claims_budget.csv")
    test = got[got["split"].eq("test")].set_index(["arm", "claim"])
    table = pd.read_csv(report / "claims.csv")
    deciding = table[table["decides"]].set_index(["arm", "claim"]).loc[test.index]
    for col in ("statistic", "p_value", "p_holm"):
        pd.testing.assert_series_equal(test[col], deciding[col], check_names=False, rtol=1e-12)
    assert test["verdict"].tolist() == deciding["verdict"].tolist()
