"""Learned optimisers: update rules that are small networks, meta-trained on optimisee tasks.

- `lstm.LSTMRule`, `mlp.MLPRule`: the learned update rules (`rules.make_rule(name)`);
- `hand_designed`: Momentum, RMSprop, Adam as update rules (the baselines);
- `unroll.OptimiseeUnroll`: an optimisee trained by a rule, run by the truncated estimators;
- `meta_training.meta_train`: meta-training in this process;
- `evaluation`: loss curves on held-out tasks, and tuning the baselines' learning rates;
- `optimizer.LearnedOptimizer`: a trained rule as a `torch.optim.Optimizer`.

Pure torch: nothing here imports Ray or the application config.
"""

from distmeta.learned_optimizers.lstm import LSTMRule
from distmeta.learned_optimizers.mlp import MLPRule
from distmeta.learned_optimizers.optimizer import LearnedOptimizer
from distmeta.learned_optimizers.rules import RULES, make_rule

__all__ = ["RULES", "LSTMRule", "LearnedOptimizer", "MLPRule", "make_rule"]
