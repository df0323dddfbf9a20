"""Each algorithm reproduces a small case worked out by hand (in the comments)."""

import math

import pytest
import torch
from torch import nn

from distmeta.algorithms import build_algorithm
from distmeta.config import AlgorithmConfig


class Scalars(nn.Module):
    """f(x) = b * (a * x), or f(x) = b * x with `with_features=False`."""

    def __init__(self, with_features: bool = True):
        super().__init__()
        self.features = nn.Linear(1, 1, bias=False) if with_features else nn.Identity()
        self.head = nn.Linear(1, 1, bias=False)

    def forward(self, x):
        return self.head(self.features(x))


def algorithm(name, model, inner_lr=0.25, inner_steps=1, ways=1, classification=False):
    config = AlgorithmConfig(name=name, inner_lr=inner_lr, inner_steps=inner_steps, test_inner_steps=inner_steps)
    return build_algorithm(config, model, classification, ways)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


# one regression task: support (x=1, y=2), query (x=1, y=3)
SUPPORT = (t(1.0).view(1, 1), t(2.0).view(1, 1))
QUERY = (t(1.0).view(1, 1), t(3.0).view(1, 1))


def test_reptile_moves_towards_the_weights_after_sgd_on_the_support_set():
    # f = w x, loss (w - 2)^2, grad 2(w - 2); w0 = 0, lr 0.25, two steps:
    # w1 = 0 - 0.25 * 2 * (0 - 2) = 1;  w2 = 1 - 0.25 * 2 * (1 - 2) = 1.5
    # meta-gradient theta - phi = 0 - 1.5 = -1.5; query loss (1.5 - 3)^2 = 2.25
    reptile = algorithm("reptile", Scalars(with_features=False), inner_steps=2)
    grads, loss, _ = reptile.task_meta_gradient({"head.weight": t(0.0).view(1, 1)}, *SUPPORT, *QUERY)
    assert grads["head.weight"].item() == pytest.approx(-1.5)
    assert loss.item() == pytest.approx(2.25)


def test_reptile_with_minibatches_takes_each_inner_step_on_its_own_examples():
    # support (x=1, y=2) and (x=1, y=4), minibatches of 1, lr 0.25, two steps:
    # step 1 on y=2: w1 = 0 - 0.25 * 2 * (0 - 2) = 1;  step 2 on y=4: w2 = 1 - 0.25 * 2 * (1 - 4) = 2.5
    # (on the whole set each step would follow (w - 2) + (w - 4): w1 = 1.5, w2 = 2.25)
    support = (t(1.0, 1.0).view(2, 1), t(2.0, 4.0).view(2, 1))
    config = AlgorithmConfig(name="reptile", inner_lr=0.25, inner_steps=2, inner_batch_size=1)
    reptile = build_algorithm(config, Scalars(with_features=False), False, 1)
    grads, _, _ = reptile.task_meta_gradient({"head.weight": t(0.0).view(1, 1)}, *support, *QUERY)
    assert grads["head.weight"].item() == pytest.approx(-2.5)
    whole = algorithm("reptile", Scalars(with_features=False), inner_steps=2)
    grads, _, _ = whole.task_meta_gradient({"head.weight": t(0.0).view(1, 1)}, *support, *QUERY)
    assert grads["head.weight"].item() == pytest.approx(-2.25)


def test_anil_adapts_the_head_only_and_differentiates_through_it():
    # f = b a x with a = 1, b = 0, lr 0.25. Inner step on b only:
    #   b' = b - lr * 2a(ab - 2) = 0 - 0.25 * 2 * (-2) = 1
    # query loss L = (a b' - 3)^2 = 4; dL/db' = 2a(ab' - 3) = -4
    #   db'/db = 1 - 2 lr a^2 = 0.5                          -> dL/db = -2
    #   db'/da = -2 lr (2ab - 2) = 1; direct dL/da = 2b'(ab' - 3) = -4  -> dL/da = -4 + (-4)(1) = -8
    anil = algorithm("anil", Scalars())
    params = {"features.weight": t(1.0).view(1, 1), "head.weight": t(0.0).view(1, 1)}
    adapted = anil.adapt(params, *SUPPORT, steps=1, differentiable=False)
    assert set(adapted) == {"head.weight"}
    assert adapted["head.weight"].item() == pytest.approx(1.0)
    grads, loss, _ = anil.task_meta_gradient(params, *SUPPORT, *QUERY)
    assert loss.item() == pytest.approx(4.0)
    assert grads["head.weight"].item() == pytest.approx(-2.0)
    assert grads["features.weight"].item() == pytest.approx(-8.0)


def test_metasgd_learns_the_inner_rate_of_each_parameter():
    # f = w x, w = 0, rate alpha = 0.25: w' = w - alpha * 2(w - 2) = 1; L = (w' - 3)^2 = 4
    # dL/dw' = -4; dw'/dw = 1 - 2 alpha = 0.5 -> dL/dw = -2; dw'/dalpha = -2(w - 2) = 4 -> dL/dalpha = -16
    metasgd = algorithm("metasgd", Scalars(with_features=False))
    params = metasgd.init_meta_parameters({"head.weight": t(0.0).view(1, 1)})
    assert params["inner_lr.head.weight"].item() == 0.25
    grads, loss, _ = metasgd.task_meta_gradient(params, *SUPPORT, *QUERY)
    assert loss.item() == pytest.approx(4.0)
    assert grads["head.weight"].item() == pytest.approx(-2.0)
    assert grads["inner_lr.head.weight"].item() == pytest.approx(-16.0)


def test_protonet_classifies_by_negative_squared_distance_to_class_means():
    # identity embedding; class 0 at (0,0) and (2,0) -> prototype (1,0); class 1 at (0,2) -> (0,2)
    # query (1,1) of class 0: squared distances 1 and 2 -> logits (-1, -2)
    # loss = -log softmax_0 = log(1 + e^-1) = 0.31326...
    model = nn.Module()
    model.features = nn.Linear(2, 2, bias=False)
    model.head = nn.Identity()
    protonet = algorithm("protonet", model, ways=2, classification=True)
    params = {"features.weight": torch.eye(2, dtype=torch.float64)}
    support_x, support_y = t(0, 0, 2, 0, 0, 2).view(3, 2), torch.tensor([0, 0, 1])
    query_x, query_y = t(1, 1).view(1, 2), torch.tensor([0])
    adapted = protonet.adapt(params, support_x, support_y, steps=0, differentiable=False)
    torch.testing.assert_close(adapted["prototypes"], t(1, 0, 0, 2).view(2, 2))
    torch.testing.assert_close(protonet.predict(params, adapted, query_x), t(-1, -2).view(1, 2))
    grads, loss, accuracy = protonet.task_meta_gradient(params, support_x, support_y, query_x, query_y)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert accuracy.item() == 1.0
    assert grads["features.weight"].shape == (2, 2)


def test_maml_takes_one_plain_gradient_step_per_inner_step():
    # f = w x, w0 = 0, lr 0.25: one step gives w = 1, two give 1.5 (as for Reptile above)
    maml = algorithm("maml", Scalars(with_features=False))
    start = {"head.weight": t(0.0).view(1, 1)}
    assert maml.adapt(start, *SUPPORT, steps=1, differentiable=False)["head.weight"].item() == pytest.approx(1.0)
    assert maml.adapt(start, *SUPPORT, steps=2, differentiable=False)["head.weight"].item() == pytest.approx(1.5)
