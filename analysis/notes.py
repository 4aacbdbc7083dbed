"""The sentences under each figure and table of the report: how each was computed (criterion,
cut-off, interval method, thresholds with their values), filled with the constants by :func:`note_for`.
Used by :mod:`analysis.report`.
"""

from __future__ import annotations

from analysis import convergence, design, design_sensitivity, mi, rank
from sweep.thresholds import THRESHOLDS

PCT = f"{rank.TOP_FRACTION:.0%}"
CUTS = ", ".join(f"{c:.0%}" for c in rank.CUTOFFS)
CI = f"{rank.CI_LEVEL:.0%}"
TH = THRESHOLDS
FLOOR = (
    f"collapsed = no active unit (Var_x μ_d ≤ {TH['active_unit_threshold']:g}) and rate < "
    f"{TH['collapse_rate_threshold']:g} nats; paper_collapsed = rate < {TH['paper_collapse_threshold']:g} nats"
)
MI_CEILING = (
    f"The mutual information ({mi.MI}) is an aggregate-posterior estimate that can never exceed log N, "
    f"N the test images ({mi.CEILING}; for runs stored before it was recorded, log of {mi.N_TEST}); "
    f"{mi.AT_CEILING} is true where it lies within {mi.MI_CEILING_TOLERANCE:g} nats of that ceiling: "
    f"{mi.FLAG}, a measure of N rather than of the code (analysis/mi.py)."
)
FID_CAVEAT = (
    "These FIDs are not comparable with Inception-based FIDs of natural images (another feature "
    "network, 128-d features, 28×28 greyscale images), nor across datasets or classifiers (the "
    "classifier's checksum is in test/fid_classifier); compare runs of one dataset only."
)
# How each figure was computed (keys: figure names of analysis.figures.FIGURES).
FIGURE_NOTES = {
    "search_front": (
        "Optuna search (study.db). Two objectives: every finished trial in the objective plane, the "
        "Pareto front (trials no other trial beats on both) joined in red. One objective: each trial's "
        "value and the best so far."
    ),
    "fig1_rate_sorted": (
        "Paper Fig. 1. Test-set KL term (rate, nats per image) of every evaluated run, ascending, log axis; "
        "colour = collapse state ({floor}). Rates at or below {rate_floor:g} nats are drawn at that floor. "
        "Past {max_rows} runs (more rows than one page holds) one row per configuration instead: the mean "
        "KL over its seeds with their min–max, one panel per latent size, coloured by the most collapsed "
        "state among its seeds. {spelling}"
    ),
    "fig2_recon_sorted": (
        "Paper Fig. 2. Test-set reconstruction term (distortion, nats per image; the paper's criterion) of "
        "every evaluated run, ascending (bars, coloured by collapse state), with its KL on the top log axis; "
        "past {max_rows} runs, of every configuration as in Fig. 1 (bar: the mean over its seeds, whisker: "
        "their min–max; diamond: the mean KL)."
    ),
    "fig3_top_recon_vs_kl": (
        "Paper Fig. 3. The top {pct} of configurations (the claims check's unit: each the mean over its ok "
        "seeds) ranked by distortion (ties by configuration; size ceil({top:g} × n ranked)): distortion "
        "against KL (log axis); colour = encoder, marker = decoder. The subtitle gives claim C3's own "
        "statistic on these configurations, Spearman's ρ with its bootstrap interval (the claims table: "
        "its p-value and verdict)."
    ),
    "fig4_top_counts": (
        "Paper Fig. 4 with base rates. Per latent size, encoder and decoder: how many runs of the top {pct} "
        "it has, beside the count expected if membership ignored it (its share of ranked runs × size of the "
        "top set); n under each label = ranked runs of that value. Lift and hypergeometric p-values: the "
        "win-rate tables."
    ),
    "fig5_top_by_latent": (
        "Paper Fig. 5. Top-{pct} counts of each encoder (top) and decoder (bottom) within each latent size; "
        "black ticks: the count expected from that family's share of the ranked runs of that latent size."
    ),
    "fig6_pca_top25": (
        "Paper Fig. 6. For each configuration of the top 25 % by mean distortion (best first; at most "
        "{max_panels}, the best, so the figure fits a page): the stored test latent means μ of its run of "
        "the lowest seed, projected on their first two principal components (exact SVD, each component's "
        "sign fixed so its largest loading is positive), coloured by class (the digit; Fashion-MNIST's garment); axis labels give each "
        "component's share of variance."
    ),
    "fig7_pca_top50": (
        "Paper Fig. 7. As Fig. 6 for the top 50 % (at most {max_panels} configurations, the best)."
    ),
    "rate_distortion": (
        "Rate (log axis) against distortion for every evaluated run, coloured by collapse state ({floor})."
    ),
    "iwae_heatmap": (
        "IWAE estimate of −log p(x) (K importance samples, stored per run in test/iwae_k), mean over the "
        "seeds of each configuration, encoder × decoder, one panel per latent size (and arm). Every "
        "normalised likelihood has one, in nats per image; runs of several likelihoods or datasets get a "
        "colour scale each and never share a panel. bce on continuous pixels has none, and the figure "
        "says so when no run has a value."
    ),
    "active_units": (
        "Active units (Var_x μ_d > {active:g} over the test set, Burda et al. 2016) of each evaluated run "
        "against its latent size, with the mean per latent size and the line y = x (every unit active)."
    ),
    "fid_distortion": (
        "Sample quality against reconstruction: FID of prior samples (decoder means, count in "
        "test/fid_samples) against the test images, in the feature space of the harness's own "
        "convolutional classifier of the dataset (sweep/fid_kid.py), log axis, against test distortion; "
        "one panel per dataset; colour = collapse state ({floor}). {fid_caveat}"
    ),
    "claims_budget": (
        "Verdicts against the training budget (analysis/budget.py): C1 (share of runs whose validation KL "
        "is below the paper's floor), C3 (rho in the top {pct}), C4 (the smallest dense1 contrast), C5a "
        "and C5b (the decoder contrasts), each claim's deciding row recomputed at every epoch from each ok "
        "run's validation reconstruction and KL (epochs.parquet) with the claims check's "
        "configuration-level tests (Holm over the budget claims' tests of that epoch); dots coloured by verdict with the claims check's interval (a contrast's: its sign-flip test inverted; C1's, C3's: bootstrap), "
        "stars the stored test-split evaluation (best-by-validation checkpoint); dashed: the null value, "
        "dotted: C1's band. The note says at which epoch each verdict settles."
    ),
    "collapse_by_factor": (
        "Share of evaluated runs flagged collapsed ({floor}) per latent size, encoder, decoder and any "
        "varying ablation key, with 95 % Wilson score intervals; labels give collapsed/evaluated."
    ),
}
# How each table was computed (keys: table names, or their prefix before the factor).
TABLE_NOTES = {
    "search_trials": "Every trial of the Optuna study (study.db): state, objective values, sampled parameters.",
    "search_importance": (
        "Optuna's fANOVA importance of each searched parameter for each objective, over finished trials "
        "(random forest with a fixed seed)."
    ),
    "runs": (
        "Every run (any status): run.parquet joined with eval.parquet. The CSV has every column; the "
        "markdown and this report show the main ones. {mi_ceiling}"
    ),
    "ranking_recon": (
        "Ok runs with a finite test distortion, ascending (the paper's criterion), ties by run name; "
        "rank 1 = best."
    ),
    "ranking_neg_elbo": "As the reconstruction ranking, by test −ELBO (distortion + rate), nats per image.",
    "ranking_iwae": "As the reconstruction ranking, by test IWAE NLL (every normalised likelihood, one ranking per likelihood; empty for bce on continuous pixels).",
    "ranking_fid": (
        "As the reconstruction ranking, by the FID of prior samples (test/fid_prior; lower = samples "
        "closer to the test images), with the KID and the FID of reconstructions beside it. {fid_caveat}"
    ),
    "claims_by_seed": (
        "Each claim's deciding verdict and statistic on the configuration means of all seeds (the claims "
        "table) beside the same test on each seed's runs alone (one replicate of each configuration, "
        "Holm over the family within that seed); same_on: how many seeds alone give the all-seeds "
        "verdict among the seeds with runs of it. Where a seed alone gives another verdict, a one-seed "
        "study could have reached it."
    ),
    "claims_by_dataset": (
        "The verdicts of the claims check side by side, one column per dataset (data.name): each dataset's "
        "runs are checked on their own, never pooled."
    ),
    "seed_aggregates": (
        "One row per configuration (latent size × encoder × decoder, plus any other varying config key): "
        "mean ± {ci} Student-t half-width over its ok seeds, with n; no interval when n < 2. "
        "{mi_ceiling} Here the flag compares the configuration's mean estimate with its mean ceiling."
    ),
    "win_rates": (
        "Top-{pct} membership by reconstruction per value: n_trained (ranked runs), n_top, share_top, "
        "share_trained, lift = share_top / share_trained (1 = chance) and the one-sided hypergeometric "
        "p-value of at least n_top members."
    ),
    "collapse_counts": (
        "Counts per latent size × encoder × decoder: runs, collapsed, partial (some but not all units active), "
        "paper_collapsed, and not evaluated (diverged, failed or no evaluation). {floor}."
    ),
    "collapse_by": (
        "Collapsed share of evaluated runs per value ({floor}), with its 95 % Wilson score interval; "
        "not-evaluated runs counted apart."
    ),
    "cutoff_sensitivity": (
        "The win-rate table recomputed for top sets of {cuts} by reconstruction, to show how much the "
        "'top' conclusions depend on the cut-off."
    ),
    "claims_budget": (
        "The budget figure's numbers: one row per claim × epoch on the validation split (split = val), "
        "then the test-split row (as in the claims table); n_configs / n_runs: what the test used; "
        "n_paper_collapsed / n_rate_collapsed count runs with validation KL "
        "below 1e-6 / 0.1 nats (the per-epoch record has no active-unit count, so the latter is the rate "
        "half of the `collapsed` flag)."
    ),
    "rank_stability": (
        "Rank stability (analysis/convergence.py): Spearman's ρ between the configurations' validation "
        f"distortion (the paper's criterion), and their validation −ELBO = recon + KL, at epoch "
        f"{convergence.REFERENCE_EPOCH} and at the sweep's last epoch (epochs.parquet, split val), over "
        "configurations (seed means: the configuration is the unit; a single-seed sweep has one run each) "
        "present at both epochs, overall and within each encoder and each decoder family, with a 95 % "
        f"percentile bootstrap over configurations within latent sizes ({convergence.permutation.N_BOOT} "
        f"resamples; none below {convergence.permutation.MIN_CORR_WEIGHT} configurations). ρ near 1: the "
        f"ranking after {convergence.REFERENCE_EPOCH} epochs is the ranking after the longer budget. A "
        f"sweep that ends at or before epoch {convergence.REFERENCE_EPOCH} says so in `note`."
    ),
    "still_improving": (
        "Per configuration (analysis/convergence.py), on its seed-mean validation −ELBO per epoch "
        "(epochs.parquet, the checkpoint criterion): best_epoch (the lowest; for one seed the run's own "
        "checkpoint, stored_best_epochs = each run's best/epoch), val_neg_elbo at the last epoch, gain = "
        f"−ELBO {convergence.LAST_EPOCHS} epochs before the last minus at the last (nats; positive = "
        f"still falling), and still_improving = best epoch among the last {convergence.LAST_EPOCHS} "
        f"epochs or gain > {convergence.MIN_GAIN:g} nats, with the reason."
    ),
    "capacity": (
        "Architecture or capacity (analysis/capacity.py): OLS (statsmodels formula API) of test distortion "
        "and of test −ELBO on C(encoder family) + C(decoder family) + log params/encoder + log "
        "params/decoder + C(latent_dim) + C(seed), beside the same model without the two capacity terms; "
        "SEs cluster-robust by configuration. Rows: C4's contrast (dense1 − the mean of the other encoder "
        "families), C5's (conv decoders of depth >= 2 − the other decoders; nats, negative = better), and "
        "the capacity slopes, each with its 95 % interval; notes name the terms a design cannot separate "
        "(one seed, one latent size, parameter counts fixed by the family), left out rather than failing. "
        "A family effect survives the control if its interval lies below 0 by family alone and still does "
        "with the capacity terms; where it is not below 0 by family alone, there is no effect to control, "
        "and the note says so; in a grid whose parameter counts are matched by design there is nothing "
        "to control, and no survival is claimed. "
        "Rows with response = design: the R² of each log parameter count on the family × latent cells "
        "(1 = the capacity slopes are not identified apart from a family × latent interaction: the model "
        "is then a description only) and the widest spread of log parameter counts within a latent size "
        "(at most log(1.05/0.95): capacity matched by design)."
    ),
    "design": (
        "One row per test (role: deciding, the Holm family of the questions on distortion; supporting, the "
        "same on −ELBO and the omnibus F-tests; descriptive, per norm level or rank, never deciding; "
        "question: direction or change, how a deciding row is decided). " + design.METHOD
    ),
    "design_sensitivity": (
        "Each deciding row of `design` with one configuration of its arm left out at a time (its cell's "
        "mean then the model's prediction, the error one df smaller): the full grid's verdict and "
        "estimate, the least and greatest estimate over the drops (drop_low, drop_high: does one cell "
        "carry the effect?), the drops tried and those that keep the verdict (kept), and the "
        "configurations whose drop changes it (changed_by). " + design_sensitivity.DESCRIPTIVE
    ),
    "claims": (
        "The claims check: one row per test, the fields of analysis.claims.Verdict (decides: the row that "
        "holds its claim's verdict; in_family: a member of the Holm family; p_bound: p at the permutation "
        "floor, a bound); statement, test and why are in claims.csv."
    ),
}


def note_for(name: str, notes: dict[str, str]) -> str:
    """The note of ``name`` (or of its longest matching prefix), filled with the constants."""
    key = max((k for k in notes if name == k or name.startswith(k + "_")), key=len, default=None)
    if key is None:
        return ""
    from analysis.plotting import MAX_ROWS, PAPER_SPELLING, PCA_MAX_PANELS, RATE_FLOOR

    return notes[key].format(
        pct=PCT, top=rank.TOP_FRACTION, cuts=CUTS, ci=CI, floor=FLOOR, rate_floor=RATE_FLOOR,
        active=TH["active_unit_threshold"], fid_caveat=FID_CAVEAT, mi_ceiling=MI_CEILING,
        max_rows=MAX_ROWS, max_panels=PCA_MAX_PANELS, spelling=PAPER_SPELLING,
    )  # fmt: skip
