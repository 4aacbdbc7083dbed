"""Figures and tables of an Optuna search (``python -m sweep.search``), read from its ``study.db``.

For a search directory ``python -m analysis.figures`` adds: ``search_front`` (two objectives: every
finished trial in the objective plane with the Pareto front drawn through it; one objective: the
optimisation history with the running best), the ``search_trials`` table, and
``search_importance``: Optuna's fANOVA parameter importances per objective. Read only: the study is
opened from its SQLite file and never written.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from analysis.plotting import PAGE_WIDTH, figure, message_figure  # noqa: E402

STUDY_FILE = "study.db"
IMPORTANCE_SEED = 0  # fANOVA fits a random forest: fixed seed, deterministic table


def load_study(root: str | Path) -> optuna.Study | None:
    """The study stored in ``<root>/study.db``, or None when ``root`` is not a search directory."""
    path = Path(root) / STUDY_FILE
    if not path.is_file():
        return None
    storage = f"sqlite:///{path.resolve()}"
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    return optuna.load_study(study_name=names[0], storage=storage) if names else None


def objective_names(study: optuna.Study) -> list[str]:
    return study.metric_names or [f"objective {i}" for i in range(len(study.directions))]


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, objective values (named) and parameters."""
    rows = []
    for t in study.trials:
        row = {"trial": t.number, "state": t.state.name.lower()}
        row.update(zip(objective_names(study), t.values or [None] * len(study.directions), strict=True))
        row.update({f"param/{k}": v for k, v in t.params.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def importance_table(study: optuna.Study) -> pd.DataFrame:
    """fANOVA importance of each searched parameter for each objective (needs 2+ finished trials)."""
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(done) < 2:
        return pd.DataFrame({"note": [f"{len(done)} finished trial(s): importances need at least 2"]})
    rows = []
    for i, name in enumerate(objective_names(study)):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
        got = optuna.importance.get_param_importances(
            study, evaluator=evaluator, target=lambda t, i=i: t.values[i]
        )
        rows += [{"objective": name, "parameter": k, "importance": v} for k, v in got.items()]
    return pd.DataFrame(rows)


@figure("search_front")
def fig_search_front(study: optuna.Study) -> Figure:
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    names = objective_names(study)
    if not done:
        return message_figure("search_front", "No finished trials yet.")
    fig = Figure(figsize=(PAGE_WIDTH * 0.75, PAGE_WIDTH * 0.5), layout="constrained")
    ax = fig.add_subplot()
    if len(names) == 2:
        front = sorted(study.best_trials, key=lambda t: t.values[0])
        ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], s=14, c="0.6", label="trial")
        ax.plot(
            [t.values[0] for t in front],
            [t.values[1] for t in front],
            "o-",
            c="#b2182b",
            ms=5,
            label=f"Pareto front ({len(front)} trials)",
        )
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title(f"{study.study_name}: {len(done)} finished trials")
    else:
        xs = [t.number for t in done]
        ys = [t.values[0] for t in done]
        sign = 1 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1
        best = pd.Series([sign * y for y in ys]).cummin() * sign
        ax.scatter(xs, ys, s=14, c="0.5", label="trial")
        ax.step(xs, best, where="post", c="#b2182b", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(names[0])
        ax.set_title(f"{study.study_name}: optimisation history ({len(done)} finished trials)")
    ax.legend()
    return fig


def search_outputs(root: str | Path, out_dir: str | Path) -> tuple[dict[str, Path], dict[str, pd.DataFrame]]:
    """({figure name: PNG}, {table name: table}) for a search directory; empty for any other."""
    study = load_study(root)
    if study is None:
        return {}, {}
    figures = {"search_front": fig_search_front(study, out_dir)[0]}
    return figures, {"search_trials": trials_table(study), "search_importance": importance_table(study)}
