"""The learned optimisers by name: "lstm" (Andrychowicz et al.) and "mlp" (learned_optimization's MLP)."""

from __future__ import annotations

from typing import Any

from distmeta.algorithms.update_rules import UpdateRule
from distmeta.errors import ConfigError
from distmeta.learned_optimizers.lstm import LSTMRule
from distmeta.learned_optimizers.mlp import MLPRule

RULES: dict[str, type[UpdateRule]] = {"lstm": LSTMRule, "mlp": MLPRule}


def make_rule(name: str, **settings: Any) -> UpdateRule:
    """The unbound learned optimiser `name`, with `settings` overriding its defaults."""
    if name not in RULES:
        raise ConfigError("optimizer", f"unknown learned optimiser {name!r} (choose from {', '.join(RULES)})")
    return RULES[name](**settings)
