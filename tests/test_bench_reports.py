"""The benchmarks that compare stored results, in process: ``bench.agreement`` (a sweep trained alone
against the same sweep in cohorts), ``bench.precision`` (IWAE NLL in float32, TF32 and bf16) and
``bench.tblog`` (what TensorBoard logging costs a run), on fake sweeps and seconds-long runs."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_cfg, states_in_order
from synthetic import make_sweep

from analysis.collect import load_sweep
from bench import agreement, precision
from bench import tblog as bench_tblog
from sweep import results
from sweep.member import Job
from sweep.tblog import RunLogger
from sweep.train import train


# ---------------------------------------------------------------------------------------- agreement
def test_agreement_reports_each_architectures_differences_and_seed_spread(tmp_path, capsys):
    shape = {"seeds": (0, 1, 2), "latents": (25,), "encoders": ("dense1",), "decoders": ("dense1", "conv2")}
    alone = make_sweep(tmp_path / "a", rng_seed=0, **shape)
    stacked = make_sweep(tmp_path / "b", rng_seed=1, failed=("L25_dense1_conv2_s1",), **shape)
    out = tmp_path / "agreement.json"
    assert agreement.main([str(alone), str(stacked), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["archs"]) == {"L25_dense1_dense1", "L25_dense1_conv2"}
    a, s = (load_sweep(p).runs.set_index("run_name") for p in (alone, stacked))
    names = [f"L25_dense1_dense1_s{k}" for k in range(3)]
    entry = report["archs"]["L25_dense1_dense1"]
    assert entry["runs"] == names
    for m in agreement.METRICS:
        want = [s.loc[n, m] - a.loc[n, m] for n in names]
        assert entry[m]["stacked_minus_alone"] == pytest.approx(want)
        assert entry[m]["max_abs_diff"] == pytest.approx(max(abs(d) for d in want))
        assert entry[m]["seed_sd_alone"] == pytest.approx(statistics.stdev(a.loc[names, m]))
    # a run without test metrics in one sweep leaves its architecture without a comparison, named
    conv = report["archs"]["L25_dense1_conv2"]
    assert conv["runs"] == [f"L25_dense1_conv2_s{k}" for k in range(3)] and set(conv) == {"runs"}
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "L25_dense1_dense1: max |stacked - alone|" in capsys.readouterr().out


def test_agreement_of_a_sweep_with_itself_is_exact(tmp_path):
    sweep = make_sweep(tmp_path, seeds=(0, 1), latents=(25,), encoders=("conv2",), decoders=("dense1",))
    out = tmp_path / "self.json"
    assert agreement.main([str(sweep), str(sweep), "--out", str(out)]) == 0
    m = json.loads(out.read_text())["archs"]["L25_conv2_dense1"]["test/neg_elbo"]
    assert m["stacked_minus_alone"] == [0.0, 0.0] and m["seed_sd_alone"] == m["seed_sd_stacked"] > 0


# ---------------------------------------------------------------------------------------- precision
def _fake_run(root: Path, name: str, decoder: tuple[str, int], status: str = "ok") -> Path:
    run_dir = root / name
    results.write_yaml(
        run_dir / ".hydra" / "config.yaml", {"decoder": {"kind": decoder[0], "depth": decoder[1]}}
    )
    results.write_complete(run_dir, status)
    return run_dir


def test_precision_picks_ok_runs_round_robin_over_decoders(tmp_path):
    conv = [_fake_run(tmp_path, f"c{k}", ("conv", 2)) for k in range(3)]
    dense = [_fake_run(tmp_path, "d0", ("dense", 1))]
    _fake_run(tmp_path, "a_diverged", ("dense", 1), status="diverged")
    assert precision.pick_runs(tmp_path, 3) == [conv[0], dense[0], conv[1]]
    assert precision.pick_runs(tmp_path, 10) == [conv[0], dense[0], conv[1], conv[2]]


def test_precision_measures_with_the_evaluations_noise(tmp_path):
    """float32 on the whole test set at the evaluation's K is the evaluation's own IWAE NLL."""
    run_dir = tmp_path / "sweeps" / "p" / "run"
    assert train(make_cfg(), run_dir)["status"] == "ok"
    out = tmp_path / "precision.json"
    k = results.read_stored_config(run_dir)["eval"]["iwae_k"]
    assert (
        precision.main(
            [str(run_dir.parent), "--runs", "5", "--images", "100000", "--k", str(k), "--out", str(out)]
        )
        == 0
    )
    report = json.loads(out.read_text())
    (row,) = report["runs"]
    ev = pq.read_table(run_dir / "eval.parquet").to_pylist()[0]
    assert row["run"] == "run" and ev["test/iwae_k"] == k
    # the plain model against the evaluation's stack of one: another CPU's kernels may round them
    # differently, by at most n·u ≈ 800 × 6e-8 ≈ 5e-5 relative (a log-mean-exp of sums of 784
    # non-negative per-pixel terms and the KL: no cancellation), as in tests/test_iwae_bias.py
    assert row["fp32_nll"] == pytest.approx(ev["test/iwae_nll"], rel=5e-5)
    assert set(report["summary"]) == {"tf32", "bf16"}
    for name in ("tf32", "bf16"):
        assert row[f"{name}_minus_fp32"] == row[f"{name}_nll"] - row["fp32_nll"]
        assert report["summary"][name]["max_abs_diff_nats"] == abs(row[f"{name}_minus_fp32"])
        if not torch.cuda.is_available():  # on CPU all three are float32 with the same noise
            assert row[f"{name}_minus_fp32"] == 0.0 and report["summary"][name]["within_tolerance"]


def test_precision_summary_flags_a_difference_beyond_the_tolerance():
    rows = [
        {"fp32_seconds": 1.0, "bf16_seconds": 0.5, "bf16_minus_fp32": 0.002},
        {"fp32_seconds": 1.0, "bf16_seconds": 1.5, "bf16_minus_fp32": -2 * precision.TOLERANCE_NATS},
    ]
    got = precision.summarise(rows, "bf16")
    assert got["max_abs_diff_nats"] == 2 * precision.TOLERANCE_NATS and got["within_tolerance"] is False
    assert got["mean_diff_nats"] == pytest.approx((0.002 - 2 * precision.TOLERANCE_NATS) / 2)
    assert got["seconds_vs_fp32"] == 1.0
    assert precision.summarise(rows[:1], "bf16")["within_tolerance"] is True


# ---------------------------------------------------------------------------------------- tblog
def test_the_logger_timing_covers_each_call_and_is_undone(tmp_path):
    before = {m: getattr(RunLogger, m) for m in ("open", "epoch", "end", "close")}
    spent: dict[str, float] = defaultdict(float)
    with bench_tblog.timed_logger(spent):
        assert all(getattr(RunLogger, m) is not f for m, f in before.items())
        logger = RunLogger(tmp_path, {"logger": "none"}, "r0")
        logger.open(0, [])
        logger.close()
    assert list(spent) == ["r0"] and spent["r0"] >= 0.0
    assert {m: getattr(RunLogger, m) for m in before} == before


def test_the_tblog_benchmark_times_the_tensorboard_runs_beside_the_same_runs_without(tmp_path, monkeypatch):
    def tiny_jobs(root: Path, logger: str) -> list[Job]:
        return [Job(make_cfg(f"seed={s}", f"logger={logger}"), root / f"s{s}", []) for s in (0, 1)]

    monkeypatch.setattr(bench_tblog, "smoke_jobs", tiny_jobs)
    monkeypatch.setattr(bench_tblog, "import_seconds", lambda repeats: [0.25] * repeats)
    before = RunLogger.epoch
    out = tmp_path / "tblog.json"
    assert bench_tblog.main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert RunLogger.epoch is before  # the timing does not outlive the benchmark
    names = set(report["wall_seconds_with_tensorboard"])
    assert len(names) == 2 and names == set(report["wall_seconds_with_none"]) == set(
        report["write_seconds_per_run"]
    )
    assert report["import_seconds"] == {"median": 0.25, "all": [0.25] * 3}
    assert report["event_bytes_per_run"] > 0 and report["epochs_per_run"] == 1
    assert all(math.isfinite(v) and v >= 0 for v in report["write_seconds_per_run"].values())


def test_the_tblog_benchmarks_jobs_are_the_smoke_grid_with_the_logger_asked_for(tmp_path):
    jobs = bench_tblog.smoke_jobs(tmp_path, "none")
    assert [j.out_dir for j in jobs] == [tmp_path / f"{e}_{d}" for e, d in bench_tblog.SMOKE]
    assert {j.cfg["sweep_name"] for j in jobs} == {"smoke"} and {j.cfg["logger"] for j in jobs} == {"none"}
    assert [(j.cfg["encoder"]["kind"], j.cfg["decoder"]["kind"]) for j in jobs] == [
        ("dense", "dense"), ("dense", "conv"), ("conv", "dense"), ("conv", "conv"),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------- sweep cost
def _timed_sweep(root: Path, times: dict[str, tuple[float, float]], grid: list[str], epochs=10) -> Path:
    """A sweep of complete runs with the given (training, evaluation) seconds and epochs, and its
    grid.json."""
    root.mkdir(parents=True)
    (root / "grid.json").write_text(json.dumps({"runs": grid}))
    for name, (train_s, eval_s) in times.items():
        d = root / name
        d.mkdir()
        results.write_parquet(
            d / "run.parquet", [{"run_name": name, "wall_seconds": train_s, "epochs": epochs}]
        )
        results.write_parquet(d / "eval.parquet", [{"run_name": name, "eval/seconds": eval_s}])
        results.write_complete(d, "ok")
    return root


def test_sweep_cost_scales_each_missing_run_by_its_family_pairs_measured_ratio(tmp_path, capsys):
    from bench import sweep_cost

    h = 36.0  # seconds: 100 h-hundredths, so every expected hour count is exact to 2 decimals
    base = {  # two seeds of each configuration: the baseline time is their mean (1 h, 0.5 h, 0.6 h)
        **{f"L{lat}_dense1_conv2_s{s}": ((90.0 + 20 * s) * h, 10.0 * h) for lat in (25, 50) for s in (0, 1)},
        **{f"L{lat}_dense1_dense1_s{s}": (40.0 * h, 10.0 * h) for lat in (25, 50) for s in (0, 1)},
        **{f"L{lat}_conv1_dense1_s{s}": (60.0 * h, 0.0) for lat in (25, 50) for s in (0, 1)},
    }
    baseline = _timed_sweep(tmp_path / "base", base, list(base))
    grid = ["L25_dense1_conv2_s0", "L50_dense1_conv2_s0", "L25_dense1_dense1_s0", "L50_dense1_dense1_s0",
            "L50_conv1_dense1_s0"]  # fmt: skip
    # measured: dense1 x conv2 three times its baseline (3 h), dense1 x dense1 twice (1 h)
    done = {"L25_dense1_conv2_s0": (290.0 * h, 10.0 * h), "L25_dense1_dense1_s0": (90.0 * h, 10.0 * h)}
    sweep = _timed_sweep(tmp_path / "new", done, grid)
    out = tmp_path / "cost.json"
    assert sweep_cost.main([str(sweep), "--baseline", str(baseline), "--out", str(out)]) == 0
    (s,) = json.loads(out.read_text())["sweeps"]
    assert (s["complete_runs"], s["grid_runs"], s["missing_runs"]) == (2, 5, 3)
    assert (s["summed_hours"], s["hours_on_workers"]) == (4.0, 2.0)
    # L50 dense1 x conv2: 1 h x 3; L50 dense1 x dense1: 0.5 h x 2; L50 conv1 x dense1 (its pair not
    # measured): 0.6 h x the dense1 decoder's median ratio, 2
    assert s["estimated_rest_summed_hours"] == 3.0 + 1.0 + 1.2
    assert s["missing_scaled_by"] == {"pair": 2, "decoder": 1, "all": 0, "none": 0}
    assert s["median_train_minutes_by_decoder"] == {"conv2": 290 * h / 60, "dense1": 90 * h / 60}


def test_sweep_cost_scales_training_with_the_epochs_and_not_evaluation(tmp_path, capsys):
    from bench import sweep_cost

    h = 36.0
    # 10 epochs: L25 0.6 h of training + 0.4 h of evaluation, L50 0.2 h + 0.8 h
    base = {"L25_dense1_dense1_s0": (60.0 * h, 40.0 * h), "L50_dense1_dense1_s0": (20.0 * h, 80.0 * h)}
    baseline = _timed_sweep(tmp_path / "base", base, list(base))
    # 30 epochs on a machine as fast: L25 1.8 h of training + 0.4 h of evaluation, ratio 1 to that expectation
    done = {"L25_dense1_dense1_s0": (180.0 * h, 40.0 * h)}
    sweep = _timed_sweep(tmp_path / "e30", done, ["L25_dense1_dense1_s0", "L50_dense1_dense1_s0"], epochs=30)
    out = tmp_path / "cost.json"
    assert sweep_cost.main([str(sweep), "--baseline", str(baseline), "--out", str(out)]) == 0
    (s,) = json.loads(out.read_text())["sweeps"]
    assert s["epochs"] == 30 and s["ratio_to_baseline"]["median"] == 1.0
    # L50: 3 × 0.2 h of training + 0.8 h of evaluation (scaling the whole 1 h by the ratio of the totals
    # instead, 2.2, would say 2.2 h)
    assert s["estimated_rest_summed_hours"] == 1.4


def test_sweep_cost_measures_each_run_at_its_own_epochs(tmp_path, capsys):
    from bench import sweep_cost

    h = 36.0
    base = {f"L{lat}_dense1_dense1_s0": (60.0 * h, 40.0 * h) for lat in (25, 50, 100)}  # 10 epochs
    baseline = _timed_sweep(tmp_path / "base", base, list(base))
    grid = list(base)
    # a 30-epoch sweep (its grid.json says so) holding one run of 30 epochs and one of 10, both as fast
    # as the baseline: each ratio is 1 at its own epochs
    sweep = _timed_sweep(tmp_path / "new", {"L25_dense1_dense1_s0": (180.0 * h, 40.0 * h)}, grid, epochs=30)
    ten = _timed_sweep(tmp_path / "ten", {"L50_dense1_dense1_s0": (60.0 * h, 40.0 * h)}, grid)
    shutil.move(ten / "L50_dense1_dense1_s0", sweep / "L50_dense1_dense1_s0")
    (sweep / "grid.json").write_text(json.dumps({"runs": grid, "settings": {"epochs": 30}}))
    out = tmp_path / "cost.json"
    assert sweep_cost.main([str(sweep), "--baseline", str(baseline), "--out", str(out)]) == 0
    (s,) = json.loads(out.read_text())["sweeps"]
    assert s["epochs"] == 30 and s["ratio_to_baseline"] == {"min": 1.0, "median": 1.0, "max": 1.0}
    assert s["estimated_rest_summed_hours"] == 2.2  # L100 at 30 epochs: 3 × 0.6 h + 0.4 h


def test_sweep_cost_counts_nested_variant_runs_and_says_what_it_cannot_scale(tmp_path, capsys):
    from bench import sweep_cost

    h = 36.0
    base = {f"L{lat}_dense1_dense1_s0": (60.0 * h, 40.0 * h) for lat in (25, 50)}
    baseline = _timed_sweep(tmp_path / "base", base, list(base))
    # a grid of two variants, each in its own directory (as experiment=paper_loss_ablation nests them),
    # and a residual run that no baseline configuration can scale
    grid = [f"{v}/L{lat}_dense1_dense1_s0" for v in ("sum", "paper") for lat in (25, 50)] + [
        "sum/L25_res2_res2_s0"
    ]
    sweep = tmp_path / "ablation"
    for v in ("sum", "paper"):
        _timed_sweep(sweep / v, {"L25_dense1_dense1_s0": (60.0 * h, 40.0 * h)}, [])
    (sweep / "grid.json").write_text(json.dumps({"runs": grid}))
    out = tmp_path / "cost.json"
    assert sweep_cost.main([str(sweep), "--baseline", str(baseline), "--out", str(out)]) == 0
    (s,) = json.loads(out.read_text())["sweeps"]
    assert (s["complete_runs"], s["grid_runs"], s["missing_runs"], s["missing_without_baseline"]) == (
        2,
        5,
        3,
        1,
    )
    assert s["summed_hours"] == 2.0 and s["estimated_rest_summed_hours"] == 2.0  # the two L50 runs, 1 h each
    said = capsys.readouterr().out
    assert (
        "2 of 5 runs" in said and "leaving out 1 with no run of their configuration in the baseline" in said
    )


def test_sweep_cost_refuses_a_directory_that_is_not_a_sweep(tmp_path, capsys):
    from bench import sweep_cost

    with pytest.raises(SystemExit) as exit_:
        sweep_cost.main([str(tmp_path), "--out", str(tmp_path / "c.json")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "is not a sweep" in err[0]
    assert not (tmp_path / "c.json").exists()


# ---------------------------------------------------------------------------------------- sweep cost
def test_the_cost_of_each_complete_sweep_in_the_readmes_is_sweep_cost_json_s():
    """bench/results/README.md's sweep_cost paragraph, and results/examples/README.md's section of each
    complete sweep, state its measured cost as bench/results/sweep_cost.json holds it: summed hours and
    hours on the workers (to the 0.1 h written), and in the bench paragraph the median training minutes
    by decoder, in the grid's order (dense, conv, res; shallow first). A sweep still training is left out:
    its numbers change with every session."""
    from analysis.plotting import family_key

    root = Path(__file__).resolve().parent.parent
    cost = json.loads((root / "bench" / "results" / "sweep_cost.json").read_text())
    bench = (root / "bench" / "results" / "README.md").read_text()
    bench = bench[bench.index("## `sweep_cost.json`") :]
    bench = bench[: bench.index("\n## ", 1)]
    examples = (root / "results" / "examples" / "README.md").read_text()
    complete = [s for s in cost["sweeps"] if s["complete_runs"] == s["grid_runs"]]
    assert complete, "no complete sweep in sweep_cost.json"
    for sweep in complete:
        name = Path(sweep["sweep"]).name
        by_decoder = sweep["median_train_minutes_by_decoder"]
        hours = [sweep["summed_hours"], sweep["hours_on_workers"]]
        want = [*hours, *(by_decoder[f] for f in sorted(by_decoder, key=family_key))]
        assert states_in_order(bench[bench.index(f"`{name}`") :], want) is None, (name, want)
        section = examples[examples.index(f"## `{name}/`") :]
        assert states_in_order(section[: section.index("\n## ", 1)], hours) is None, (name, hours)
