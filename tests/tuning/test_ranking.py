"""Ranking trials, their table and their plot (from finished trials' results, no cluster needed)."""

from dataclasses import dataclass, field

from distmeta.config import load_config
from distmeta.errors import NonFiniteLossError
from distmeta.tuning.plot import plot_search
from distmeta.tuning.search import rank_trials, ranked_table
from distmeta.tuning.space import parse_space

BASE = load_config(None, ["train.steps=40"])
SPACE = parse_space(
    {"algorithm.inner_lr": {"loguniform": [1.0e-3, 10.0]}, "algorithm.inner_steps": {"choice": [1, 3]}}, BASE
)


@dataclass
class TrialResult:
    """What the ranking reads of each of Tune's results: its values, last metrics, error."""

    config: dict
    metrics: dict
    error: BaseException | None = None
    path: str = field(default="/runs/search/trial")


def trial(trial_id, lr, steps, val=None, step=40, error=None):
    metrics = {"trial_id": trial_id, "step": step, **({"val_mse": val} if val is not None else {})}
    return TrialResult({"algorithm.inner_lr": lr, "algorithm.inner_steps": steps}, metrics, error)


RESULTS = [
    trial("a", 0.01, 1, val=0.9),
    trial("b", 10.0, 1, error=NonFiniteLossError(3, 7, float("nan"))),
    trial("c", 0.003, 3, val=0.5),
    trial("d", 5.0, 3, val=float("nan")),
    trial("e", 0.1, 1, val=1.5, step=20),
    TrialResult({"algorithm.inner_lr": 0.2, "algorithm.inner_steps": 1}, {"trial_id": "f"}),
]


def test_trials_rank_best_first_with_failed_and_diverged_ones_last():
    ranked = rank_trials(RESULTS, SPACE, "val_mse", "min", BASE.train.steps)
    assert [o.trial_id for o in ranked[:3]] == ["c", "a", "e"]
    assert {o.trial_id for o in ranked[3:]} == {"b", "d", "f"}
    statuses = {o.trial_id: o.status for o in ranked}
    assert statuses["e"] == "stopped early"
    assert statuses["b"] == "failed: NonFiniteLossError: meta-loss is nan at step 3"
    assert statuses["d"] == "diverged: val_mse is nan"
    assert statuses["f"] == "unfinished"  # the search was interrupted before it reported


def test_a_metric_to_maximise_ranks_the_highest_first():
    ranked = rank_trials(RESULTS, SPACE, "val_mse", "max", BASE.train.steps)
    assert [o.trial_id for o in ranked[:3]] == ["e", "a", "c"]


def test_the_table_has_a_row_per_trial_and_a_column_per_searched_field():
    table = ranked_table(rank_trials(RESULTS, SPACE, "val_mse", "min", 40), SPACE, "val_mse")
    header = table.splitlines()[1]
    assert "algorithm.inner_lr" in header and "algorithm.inner_steps" in header and "val_mse" in header
    assert len(table.splitlines()) == 4 + len(RESULTS)


def test_the_plot_is_written_even_with_failed_trials(tmp_path):
    plot_search(tmp_path / "search.png", SPACE, rank_trials(RESULTS, SPACE, "val_mse", "min", 40), "val_mse")
    assert (tmp_path / "search.png").read_bytes()[:4] == b"\x89PNG"
