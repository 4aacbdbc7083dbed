"""README's claim × condition table (analysis/conditions.py): written from each condition's claims table,
verdict first, the deciding row's numbers, n configurations; the paragraph says which verdicts agree."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from analysis import claims, conditions, coverage
from sweep import results
from sweep.keys import flatten, protocol

FAMILIES = ("dense1", "dense4", "conv1", "conv2", "conv4")
ENC = {"dense1": 0.0, "dense4": 8.0, "conv1": -1.5, "conv2": -2.7, "conv4": -0.9}  # planted, nats
DEC = {"dense1": 7.0, "dense4": 7.5, "conv1": 0.0, "conv2": 0.3, "conv4": 0.1}


def runs(enc=ENC, dec=DEC, noise=0) -> pd.DataFrame:
    """A seed-0 G0-shaped run table (latent 25 and 50) with planted encoder and decoder effects (the
    noise drawn from seed ``noise``)."""
    rng = np.random.default_rng(noise)
    rows = []
    for latent, e, d in itertools.product((25, 50), FAMILIES, FAMILIES):
        dist = 90.0 + enc[e] + dec[d] + rng.normal(0, 0.3)
        rows.append({
            "run_name": f"L{latent}_{e}_{d}_s0", "status": "ok", "seed": 0, "latent_dim": latent,
            "family/encoder": e, "family/decoder": d, "loss.reduction": "sum", "test/distortion": dist,
            "test/rate": 20.0 + rng.normal(0, 1), "test/neg_elbo": dist + 20, "test/iwae_nll": dist + 18,
            "collapsed": False, "paper_collapsed": False, "partial": False,
            "latent/knn_acc": 0.95 + rng.normal(0, 0.005), "latent/linear_probe_acc": 0.95,
        })  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def half_grids(monkeypatch):
    """The planted grids have 50 configurations (latent 25 and 50), half of G0's 100, and one seed unless
    a test adds more (:func:`grid_runs`): each condition's whole grid is 50 runs."""
    grid_runs(monkeypatch, lambda c: 50)


def grid_runs(monkeypatch, runs_of) -> None:
    """Each condition's whole grid: ``runs_of(condition)`` runs."""
    grids = tuple(dataclasses.replace(c, runs=runs_of(c)) for c in conditions.CONDITIONS)
    monkeypatch.setattr(conditions, "CONDITIONS", grids)


def write_condition(root, name, run_table, n_runs, seed=0, report=None) -> pd.DataFrame:
    """A committed condition: ``claims.csv`` of ``run_table`` (in ``report``, default the sweep) and
    ``n_runs`` complete ok run directories of seed ``seed`` in its grid (:func:`add_runs`), with the
    record of the runs it was made from (:func:`record_inputs`)."""
    out = root / (report or name)
    out.mkdir(parents=True, exist_ok=True)
    table = claims.verdicts_table(claims.check_claims(run_table))
    table.to_csv(out / "claims.csv", index=False)
    run_table.to_csv(out / "runs.csv", index=False)  # analysis.figures writes both
    add_runs(root / name, n_runs, seed)
    record_inputs(root / name, out, None if report is None else (seed,))
    return pd.read_csv(out / "claims.csv")


def record_inputs(sweep, report, seeds=None) -> None:
    """``report``'s inputs.csv as ``analysis.figures`` writes it after reading the grid's complete runs
    (of ``seeds``) as they are now."""
    names = coverage.done(sweep, seeds).names
    digests = [coverage.run_digest(sweep / n) for n in names]
    pd.DataFrame({"run_dir": list(names), "sha256": digests}).to_csv(report / coverage.INPUTS, index=False)


@functools.cache
def experiment_protocol(sweep_name: str) -> dict:
    """The protocol of the condition whose sweep is ``sweep_name``, as its experiment composes it."""
    (condition,) = {c.sweep: c for c in conditions.CONDITIONS if c.sweep == sweep_name}.values()
    (cfg,) = coverage.expected_configs(condition.experiment, ["L25_dense1_dense1_s0"]).values()
    return protocol(flatten(cfg))


def add_runs(sweep, n_runs, seed=0, status="ok", complete=True) -> list[str]:
    """``n_runs`` run directories of seed ``seed`` in ``sweep`` (complete with ``status``, or started
    only), added to the grid its ``grid.json`` lists."""
    grid = sweep / "grid.json"
    names = json.loads(grid.read_text())["runs"] if grid.is_file() else []
    new = [f"L25_dense{len(names) + i + 1}_dense1_s{seed}" for i in range(n_runs)]
    for name in new:
        (sweep / name).mkdir(parents=True)
        # trained as the condition's experiment says (the protocol its column's label promises)
        row = {"run_name": name, "status": status, **experiment_protocol(sweep.name)}
        pq.write_table(pa.Table.from_pylist([row]), sweep / name / "run.parquet")
    # and trained what its experiment composes each name to (its stored config)
    for name, cfg in coverage.expected_configs(sweep.name, new).items():
        results.write_yaml(sweep / name / ".hydra" / "config.yaml", cfg)
        (sweep / name / "eval.parquet").write_bytes(
            f"{sweep.name}/{name}".encode()
        )  # the inputs digest reads it
        if complete:
            (sweep / name / "COMPLETE").write_text(json.dumps({"status": status}))
    sweep.mkdir(parents=True, exist_ok=True)
    grid.write_text(json.dumps({"schema_version": 1, "runs": names + new}))
    return new


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """Two decided conditions (the second with dense1 planted best: C4 flips) and two pending."""
    root = tmp_path_factory.mktemp("examples")
    first = write_condition(root, "reproduce", runs(), 50)
    better = {**ENC, "dense1": -5.0}
    second = write_condition(root, "reproduce_e30", runs(enc=better), 50)
    return root, first, second


def test_each_cell_starts_with_the_deciding_verdict_and_writes_its_numbers_and_n(two):
    root, first, _ = two
    headers, cells = conditions.table(root)
    assert headers[0] == "MNIST, 10 epochs, 3 seeds (50 configurations, 50 runs)"
    for _, row in first[first["decides"]].iterrows():
        cell = cells[row.claim][headers[0]]
        assert cell.startswith(f"{row.verdict}:"), cell
        if np.isfinite(row.statistic):
            for x in (row.statistic, row.ci_low, row.ci_high):
                assert conditions.num(x) in cell, (row.claim, x, cell)
            assert f"n = {row.n_configs}" in cell
    assert all(cells[c][h] == "pending" for c in cells for h in (headers[1], headers[3], headers[4]))


def test_c4_names_the_family_that_gave_the_smallest_gap(two):
    root, first, second = two
    headers, cells = conditions.table(root)
    # planted: conv2 is the best encoder (−2.7) in the first condition, so dense1's smallest gap is against it
    assert "smallest gap (conv2 − dense1)" in cells["C4"][headers[0]]
    assert cells["C4"][headers[0]].startswith("not reproduced:")
    assert cells["C4"][headers[2]].startswith("reproduced:")  # dense1 planted best of all
    joint = second[second["claim"].eq("C4") & second["decides"]].iloc[0]
    contrasts = second[second["claim"].eq("C4") & second["part"].str.startswith("dense1 vs ")]
    gaps = contrasts[contrasts["metric"].eq("test/distortion")].set_index("part")["statistic"]
    assert joint.statistic == gaps.min()
    assert f"({gaps.idxmin().split(' vs ')[1]} − dense1)" in cells["C4"][headers[2]]


def test_c4_not_reproduced_on_another_contrast_than_the_smallest_gap_says_so():
    # conv2's gap is the smallest (−1.0) but inconclusive; conv1's (−0.5) is the not-reproduced one,
    # so the joint row carries conv1's numbers (analysis.arch_claims) and the cell must not call them
    # the smallest gap
    def contrast(part, stat, verdict, decides=False):
        return {"claim": "C4", "part": part, "metric": "test/distortion", "statistic": stat, "ci_low": stat - 0.2,
                "ci_high": stat + 0.2, "p_value": 0.001, "p_holm": 0.004, "p_bound": False, "n_configs": 40,
                "verdict": verdict, "decides": decides, "why": ""}  # fmt: skip
    rows = pd.DataFrame([
        contrast("dense1 vs conv1", -0.5, "not reproduced"), contrast("dense1 vs conv2", -1.0, "inconclusive"),
        contrast("dense1 vs every family", -0.5, "not reproduced", decides=True),
    ])  # fmt: skip
    text = conditions.cell(rows.iloc[2], rows)
    assert text.startswith("not reproduced: smallest not-reproduced gap (conv1 − dense1) −0.5 [−0.7, −0.3] nats")
    rows.loc[1, "statistic"] = -0.4  # now conv1's is the smallest gap too
    assert "not reproduced: smallest gap (conv1 − dense1) −0.5" in conditions.cell(rows.iloc[2], rows)
    # a reproduced joint row is the smallest gap, with or without its contrast rows beside it
    won = rows.iloc[[2]].assign(verdict="reproduced", statistic=0.5, ci_low=0.3, ci_high=0.7)
    assert conditions.cell(won.iloc[0], won).startswith("reproduced: smallest gap 0.5 [0.3, 0.7] nats")


def test_the_paragraph_names_agreeing_and_condition_dependent_verdicts(two):
    root, *_ = two
    text = conditions.agreement(*conditions.table(root))
    assert "Across the 2 conditions decided so far" in text
    assert re.search(
        r"Depends on the condition: C4 \(not reproduced in MNIST, 10 epochs, 3 seeds, reproduced in MNIST, 30 epochs",
        text,
    )
    assert re.search(r"reproduced in every one: [^;.]*C5a", text)
    assert (
        "Pending: MNIST, 10 epochs, seed 0; capacity-matched, seed 0; Fashion-MNIST, 10 epochs, seed 0"
        " (their grids are not complete yet)." in text
    )
    headers, cells = conditions.table(root)  # one pending condition: its grid, in the singular
    one = [h for h in headers if not h.startswith(("MNIST, 10 epochs, seed 0", "capacity-matched"))]
    text = conditions.agreement(one, cells)
    assert text.endswith("Pending: Fashion-MNIST, 10 epochs, seed 0 (its grid is not complete yet).")


@pytest.mark.parametrize(
    "planted, says", [(ENC, "gives every verdict of"), ({**ENC, "dense1": -5.0}, "gives other verdicts than")]
)
def test_the_seed_0_baseline_counts_its_own_runs_and_is_compared_with_all_seeds(
    tmp_path, monkeypatch, planted, says
):
    grid_runs(monkeypatch, lambda c: 150 if c.sweep == "reproduce" and c.seeds is None else 50)
    # the reproduction's three seeds (50 runs each) and its seed 0 alone, reported in reproduce/seed0
    three = pd.concat([runs().assign(seed=s) for s in (0, 1, 2)], ignore_index=True)
    write_condition(tmp_path, "reproduce", three, 50, seed=0)
    for seed in (1, 2):
        add_runs(tmp_path / "reproduce", 50, seed)
    record_inputs(tmp_path / "reproduce", tmp_path / "reproduce")  # made once every seed was there
    write_condition(tmp_path, "reproduce", runs(enc=planted), 0, report="reproduce/seed0")
    headers, cells = conditions.table(tmp_path)
    assert headers[:2] == [
        "MNIST, 10 epochs, 3 seeds (50 configurations, 150 runs)",
        "MNIST, 10 epochs, seed 0 (50 configurations, 50 runs)",
    ]
    text = conditions.agreement(headers, cells)
    # a part of the three seeds' runs, not another condition: compared with them alone
    assert text.startswith("Only one condition is decided so far (MNIST, 10 epochs, 3 seeds);")
    assert f"MNIST, 10 epochs, seed 0, the seed-0 runs of MNIST, 10 epochs, 3 seeds, {says}" in text
    if "other" in says:  # dense1 planted best in seed 0 alone: C4 differs
        assert "in C4 (reproduced against not reproduced)" in text


def test_rankings_compare_each_decided_condition_and_the_baseline_s_other_seeds_with_the_baseline(
    tmp_path, monkeypatch
):
    grid_runs(monkeypatch, lambda c: 150 if c.sweep == "reproduce" and c.seeds is None else 50)
    seeds = {s: runs(noise=s).assign(seed=s) for s in (0, 1, 2)}  # the same configurations, each its own noise
    write_condition(tmp_path, "reproduce", pd.concat(seeds.values(), ignore_index=True), 50, seed=0)
    for seed in (1, 2):
        add_runs(tmp_path / "reproduce", 50, seed)
    record_inputs(tmp_path / "reproduce", tmp_path / "reproduce")
    write_condition(tmp_path, "reproduce", seeds[0], 0, report="reproduce/seed0")
    e30 = runs(enc={**ENC, "dense1": -5.0}, noise=7)
    write_condition(tmp_path, "reproduce_e30", e30, 50)
    headers, _ = conditions.table(tmp_path)
    lines = conditions.rankings(tmp_path, headers)
    rows = {line.split(" | ")[0][2:]: line for line in lines if line.startswith("| ") and "---" not in line}
    assert list(rows) == [
        "against MNIST, 10 epochs, seed 0", "MNIST, 10 epochs, seed 1 (replicate)",
        "MNIST, 10 epochs, seed 2 (replicate)", "MNIST, 30 epochs, seed 0", "capacity-matched, seed 0",
        "Fashion-MNIST, 10 epochs, seed 0",
    ]  # fmt: skip
    # each ρ is scipy's Spearman of the two conditions' distortions, configuration by configuration
    for name, other in (("MNIST, 10 epochs, seed 1 (replicate)", seeds[1]), ("MNIST, 30 epochs, seed 0", e30)):
        rho = stats.spearmanr(seeds[0]["test/distortion"], other["test/distortion"]).statistic
        assert rows[name].startswith(f"| {name} | 50 | {conditions.num(rho)} ["), rows[name]
    assert rows["capacity-matched, seed 0"].endswith("| pending | pending | pending | pending |")
    assert "\n".join(lines) in conditions.markdown(tmp_path)
    # a decided report without its runs.csv: refused, with the command that regenerates it
    (tmp_path / "reproduce_e30" / "runs.csv").unlink()
    with pytest.raises(conditions.ConditionsError, match=r"runs.csv is missing .*python -m analysis.figures results/examples/reproduce_e30"):
        conditions.rankings(tmp_path, headers)
    # no baseline decided: no rankings at all
    assert conditions.rankings(tmp_path, [h for h in headers if not h.startswith("MNIST, 10 epochs, seed 0")]) == []


def test_no_rankings_without_the_baseline(two):
    root, *_ = two
    assert "How far the configurations' ranking" not in conditions.markdown(root)


# a condition whose grid is not complete stays pending, one whose report is older than its runs is refused
GRIDS = [
    (
        "a run not complete (failed, or not trained yet)",
        dict(complete=False),
        "pending",
        "3 of its 4 runs complete",
    ),
    (
        "a run that diverged",
        dict(status="diverged"),
        "decided",
        "capacity-matched, seed 0 (3 configurations, 4 runs)",
    ),
    (
        "a report older than its runs",
        dict(),
        "refused",
        "not made from its grid's 4 complete runs as they are now (lacks: 1 (L25_dense4_dense1_s0))",
    ),
]


def four_run_capacity_grid(monkeypatch):
    grid_runs(monkeypatch, lambda c: 4 if c.sweep == "capacity_matched" else 50)


@pytest.mark.parametrize("case, fourth, outcome, says", GRIDS, ids=[g[0] for g in GRIDS])
def test_a_condition_s_report_must_be_of_its_whole_grid(
    tmp_path, capsys, monkeypatch, case, fourth, outcome, says
):
    four_run_capacity_grid(monkeypatch)
    three = runs().iloc[:3]  # claims.csv decided on 3 ok runs
    write_condition(tmp_path, "reproduce", runs(), 50)
    write_condition(tmp_path, "capacity_matched", three, 3)
    add_runs(tmp_path / "capacity_matched", 1, **fourth)
    if outcome == "decided":  # made once the fourth run had ended
        record_inputs(tmp_path / "capacity_matched", tmp_path / "capacity_matched")
    if outcome == "refused":
        with pytest.raises(conditions.ConditionsError, match=re.escape(says)):
            conditions.table(tmp_path)
        assert "python -m analysis.figures results/examples/capacity_matched --out" in str(
            pytest.raises(conditions.ConditionsError, conditions.table, tmp_path).value
        )
        return
    headers, cells = conditions.table(tmp_path)
    if outcome == "decided":  # complete, and not ok: the claims are decided on the 3 ok runs
        assert says in headers
        return
    assert cells["C4"]["capacity-matched, seed 0"] == "pending"
    err = capsys.readouterr().err
    assert says in err and "the rest failed or are not trained yet" in err


def test_one_decided_condition_claims_no_agreement(tmp_path):
    write_condition(tmp_path, "reproduce", runs(), 50)
    text = conditions.agreement(*conditions.table(tmp_path))
    assert text.startswith("Only one condition is decided so far") and "every one" not in text


def test_readme_block_is_rewritten_in_place_and_nothing_else(tmp_path, two):
    root, *_ = two
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{conditions.BEGIN}\nstale\n{conditions.END}\nafter\n")
    assert conditions.main([str(root), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith("\nafter\n") and "stale" not in text
    assert conditions.markdown(root) in text


BAD = [
    ("no markers", lambda tmp, root: (tmp / "R.md", "no block here\n", [str(root), "--readme", str(tmp / "R.md")]), "must hold the markers"),
    ("two blocks", lambda tmp, root: (tmp / "R.md", f"{conditions.BEGIN}{conditions.END}{conditions.BEGIN}{conditions.END}", [str(root), "--readme", str(tmp / "R.md")]), "once each"),
    ("no root", lambda tmp, root: (tmp / "R.md", "x", [str(tmp / "nope"), "--readme", str(tmp / "R.md")]), "is not a directory; valid:"),
]  # fmt: skip


@pytest.mark.parametrize("case, make, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_error_line_exit_2_and_nothing_written(tmp_path, capsys, two, case, make, needle):
    root, *_ = two
    path, text, argv = make(tmp_path, root)
    path.write_text(text)
    assert conditions.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
    assert path.read_text() == text


def test_a_claims_table_of_several_protocol_groups_is_refused(tmp_path):
    sweep = tmp_path / "reproduce"
    add_runs(sweep, 50)  # its grid complete
    table = claims.verdicts_table(claims.check_claims(runs()))
    both = pd.concat([table.assign(dataset="mnist"), table.assign(dataset="fashion_mnist")])
    both[["dataset", *table.columns]].to_csv(sweep / "claims.csv", index=False)
    with pytest.raises(conditions.ConditionsError, match="several protocol groups"):
        conditions.table(tmp_path)


def test_a_claims_table_of_several_arms_is_refused(tmp_path):
    sweep = tmp_path / "reproduce"
    add_runs(sweep, 50)  # its grid complete
    table = claims.verdicts_table(claims.check_claims(runs()))
    both = pd.concat([table.assign(arm="loss.reduction=sum"), table.assign(arm="loss.reduction=paper")])
    both.to_csv(sweep / "claims.csv", index=False)
    with pytest.raises(conditions.ConditionsError, match="several arms"):
        conditions.table(tmp_path)


def _decided(root) -> None:
    write_condition(root, "reproduce", runs(), 50)
    write_condition(root, "capacity_matched", runs(), 50)


@pytest.mark.parametrize(
    "case, change, says",
    [
        (
            "a run re-evaluated after the report",
            lambda sweep, other: (sweep / "L25_dense7_dense1_s0" / "eval.parquet").write_bytes(
                b"re-evaluated"
            ),
            "read files that changed since: 1 (L25_dense7_dense1_s0)",
        ),
        (
            "another sweep's report copied in",
            lambda sweep, other: (
                (other / coverage.INPUTS).write_bytes((sweep / coverage.INPUTS).read_bytes())
                or (other / "claims.csv").write_bytes((sweep / "claims.csv").read_bytes())
            ),
            "read files that changed since: 50",
        ),
        (
            "a report without its record",
            lambda sweep, other: (sweep / coverage.INPUTS).unlink(),
            "has no inputs.csv",
        ),
    ],
)
def test_a_report_not_made_from_its_runs_as_they_are_is_refused(tmp_path, case, change, says):
    _decided(tmp_path)
    conditions.table(tmp_path)  # as made: accepted
    for name in ("reproduce", "capacity_matched"):  # the two grids hold the same run names
        assert coverage.done(tmp_path / name).names
    change(tmp_path / "capacity_matched", tmp_path / "reproduce")
    with pytest.raises(conditions.ConditionsError, match=re.escape(says)):
        conditions.table(tmp_path)


def _rewrite_runs(sweep, names, **values) -> None:
    for name in names:
        path = sweep / name / "run.parquet"
        row = {**pq.read_table(path).to_pylist()[0], **values}
        pq.write_table(pa.Table.from_pylist([row]), path)


def _restored(sweep, name, **encoder) -> None:
    path = sweep / name / ".hydra" / "config.yaml"
    cfg = results.read_stored_config(sweep / name)
    results.write_yaml(path, {**cfg, "encoder": {**cfg["encoder"], **encoder}})


def _reevaluated(sweep, name, **changed) -> None:
    profile = {k.removeprefix("eval."): v for k, v in experiment_protocol(sweep.name).items() if k.startswith("eval.")}
    row = {"eval/profile": json.dumps({**profile, **changed}, sort_keys=True)}
    pq.write_table(pa.Table.from_pylist([row]), sweep / name / "eval.parquet")


@pytest.mark.parametrize(
    "sweep, change, says",
    [
        (  # MNIST runs in the Fashion-MNIST condition's folder (an experiment=reproduce launch there)
            "reproduce_fashion_mnist",
            lambda sweep, names: _rewrite_runs(sweep, names, **{"data.name": "mnist"}),
            "{first} has data.name=mnist, not fashion_mnist",
        ),
        (  # one run of the 30-epoch condition trained 2 epochs
            "reproduce_e30",
            lambda sweep, names: _rewrite_runs(sweep, names[4:5], epochs=2),
            "{fifth} has epochs=2, not 30",
        ),
        (  # one run re-evaluated with another kNN k: its numbers are of another profile
            "capacity_matched",
            lambda sweep, names: _reevaluated(sweep, names[0], knn_k=50),
            "{first} has eval.knn_k=50, not 5",
        ),
        (  # the reproduction's default widths in the capacity-matched folder: the protocol is the same
            "capacity_matched",
            lambda sweep, names: _restored(sweep, names[1], width=512),
            "{second}: encoder.width: 512 -> ",
        ),
    ],
    ids=["another dataset", "another budget", "another evaluation profile", "not capacity-matched"],
)
def test_a_condition_whose_runs_are_not_its_experiments_is_refused(tmp_path, sweep, change, says):
    """Complete, and its report made from its runs as they are: still refused when those runs were not
    trained (or evaluated) as the condition's experiment says; its column would carry a wrong label."""
    write_condition(tmp_path, sweep, runs(), 50)
    conditions.table(tmp_path)  # as its experiment trains it: accepted
    names = list(coverage.done(tmp_path / sweep).names)
    change(tmp_path / sweep, names)
    record_inputs(tmp_path / sweep, tmp_path / sweep)  # the report made from the runs as they now are
    says = says.format(first=names[0], second=names[1], fifth=names[4])  # the runs in the order the grid lists them
    with pytest.raises(conditions.ConditionsError, match=re.escape(f"was not trained as experiment={sweep} says ({says}")):
        conditions.table(tmp_path)


@pytest.mark.parametrize(
    "case, change, says",
    [
        (
            "an unreadable grid.json",
            lambda sweep: (sweep / "grid.json").write_text('{"runs": ['),
            "its grid is not known from a launch (the run directories on disk",
        ),
        (
            "a narrowed relaunch's grid.json",
            lambda sweep: (sweep / "grid.json").write_text(
                json.dumps(
                    {"schema_version": 1, "runs": json.loads((sweep / "grid.json").read_text())["runs"][:3]}
                )
            ),
            "lists 3 runs, not the condition's 50",
        ),
    ],
)
def test_a_grid_not_known_whole_keeps_its_condition_pending(tmp_path, capsys, case, change, says):
    _decided(tmp_path)
    change(tmp_path / "capacity_matched")
    headers, cells = conditions.table(tmp_path)
    assert cells["C4"]["capacity-matched, seed 0"] == "pending"
    err = capsys.readouterr().err
    assert says in err and "its condition stays pending" in err, err


def test_a_root_without_any_condition_is_refused_and_nothing_written(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"{conditions.BEGIN}\nkept\n{conditions.END}\n")
    (tmp_path / "elsewhere").mkdir()
    assert conditions.main([str(tmp_path / "elsewhere"), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and err[0].startswith("error: root=")
        and "holds none of the conditions' sweeps" in err[0]
    )
    assert "kept" in readme.read_text()


def test_a_contrast_without_an_interval_says_so_instead_of_nan():
    # too few cells for the sign-flip test to reject any shift: claims.csv holds no interval (NaN)
    row = pd.Series({
        "claim": "C5b", "part": "conv2+conv4 vs conv1", "metric": "test/distortion", "statistic": 1.5,
        "ci_low": np.nan, "ci_high": np.nan, "p_value": 0.5, "p_holm": 1.0, "p_bound": False, "n_configs": 6,
        "verdict": "inconclusive", "decides": True, "why": "",
    })  # fmt: skip
    text = conditions.cell(row, row.to_frame().T)
    assert "no interval: too few configurations" in text and "nan" not in text, text
    assert text.startswith("inconclusive: conv1 − (conv2, conv4) 1.5 [no interval")
