"""Search space files: what they accept, and errors that name the key before any trial starts."""

import pytest

from distmeta.config import load_config
from distmeta.errors import ConfigError
from distmeta.tuning.space import load_space, parse_space, with_values

BASE = load_config(None, [])


def test_a_space_maps_dotted_fields_to_distributions():
    space = parse_space(
        {
            "algorithm.inner_lr": {"loguniform": ["1e-3", 1.0]},
            "algorithm.inner_steps": {"choice": [1, 3, 5]},
            "train.meta_batch_size": {"grid": [10, 20]},
            "seed": {"randint": [0, 100]},
        },
        BASE,
    )
    assert space.paths == ["algorithm.inner_lr", "algorithm.inner_steps", "train.meta_batch_size", "seed"]
    assert space.dimensions[0].values == (1e-3, 1.0)  # YAML's 1e-3 string is read as the number
    assert space.grid_size() == 2


def test_values_of_a_trial_make_a_checked_config():
    config = with_values(BASE, {"algorithm.inner_lr": 0.05, "algorithm.inner_steps": 3})
    assert config.algorithm.inner_lr == 0.05 and config.algorithm.inner_steps == 3


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"algorithm.inner_lrr": {"uniform": [0, 1]}}, "algorithm.inner_lrr: is not a config field"),
        ({"algorithm": {"choice": [1]}}, "algorithm: is a config section"),
        ({"algorithm.inner_lr": {"normal": [0, 1]}}, "algorithm.inner_lr: unknown distribution 'normal'"),
        ({"algorithm.inner_lr": [0.1, 0.2]}, "algorithm.inner_lr: expected one distribution"),
        ({"algorithm.inner_lr": {"uniform": [1.0]}}, r"algorithm.inner_lr: uniform needs \[low, high\]"),
        ({"algorithm.inner_lr": {"uniform": [1.0, 0.5]}}, "algorithm.inner_lr: uniform needs low < high"),
        ({"algorithm.inner_lr": {"loguniform": [0, 1]}}, "loguniform needs a positive low bound"),
        ({"algorithm.inner_steps": {"randint": [1, 2.5]}}, "randint bounds must be integers"),
        ({"algorithm.inner_steps": {"choice": []}}, "algorithm.inner_steps: choice needs a list"),
        (
            {"algorithm.inner_lr": {"uniform": [-1, 1]}},
            "uniform can give -1, which the config refuses "
            r"\(algorithm.inner_lr: must be positive",
        ),
        ({"algorithm.name": {"choice": ["maml", "mamal"]}}, "choice can give 'mamal'"),
        (
            {"train.meta_batch_size": {"uniform": [8, 64]}},
            "train.meta_batch_size: uniform draws real numbers, and train.meta_batch_size takes whole numbers",
        ),
        ({"algorithm.inner_steps": {"loguniform": [1, 10]}}, "algorithm.inner_steps: loguniform draws real numbers"),
        ({}, "expected a mapping of config fields to distributions"),
    ],
)
def test_a_bad_space_is_refused_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(raw, BASE, "space.yaml")


def test_a_space_file_is_read_and_its_errors_name_the_file(tmp_path):
    good = tmp_path / "space.yaml"
    good.write_text("algorithm.inner_lr:\n  loguniform: [1.0e-3, 1.0]\n")
    assert load_space(good, BASE).paths == ["algorithm.inner_lr"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithm.inner_lr: {loguniform: [1.0e-3, 1.0]\n")
    with pytest.raises(ConfigError, match="bad.yaml: is not valid YAML"):
        load_space(bad, BASE)
    with pytest.raises(ConfigError, match="missing.yaml: search space file does not exist"):
        load_space(tmp_path / "missing.yaml", BASE)
