"""LEO (Rusu et al., 2019): a task's head generated from latent codes, adapted in the latent space.

For a task of N classes, with e = f(x) the features of the feature extractor:

1. encoder: a linear map (no bias) of each support example's features to a code c_i;
2. relation network: an MLP (three layers of 2 x latent_size, no biases, ReLU between) over
   every pair (c_i, c_j) of the task's support examples, averaged over j and then over the
   examples of each class: per class, the mean and log-variance of a Gaussian latent;
3. the latent z_k: during meta-training a reparameterised sample mu_k + sigma_k * noise
   (`distmeta.algorithms.task_noise`), at validation, test and `adapt` the mean mu_k;
4. decoder: a linear map (no bias) of z_k to w_k, the head's row of class k; logits e . w_k
   (`leo.head: linear`, the paper's) or -|e - w_k|^2 (`leo.head: distance`: ProtoNets' classifier
   with w_k as the prototype, the rule that features from a protonet run were trained for, which
   a linear head can only approximate through the decoder);
5. `steps` gradient steps on z on the support loss (through the decoder), at a rate per latent
   dimension, then `leo.finetune_steps` steps on the decoded head weights themselves, at a
   rate per feature dimension; both rates are meta-learned (`leo.latent_lr`, `leo.finetune_lr`).

The meta-loss is the query loss plus, as in the paper, `kl_weight` x KL(N(mu, sigma) || N(0, I))
(here in closed form, where the reference estimates it from the sample), `encoder_penalty_weight`
x |z_adapted (held constant) - z_start|^2 and `orthogonality_weight` x the decoder's penalty
on correlated rows. It is differentiated through both inner loops: second order, or with
`first_order` with the inner gradients held constant (the direct paths remain).

The relation network rather than a per-class mean of the codes: each class's latent then
depends on the other classes of the task (what tells the classes apart), which a mean over a
class's own examples cannot see, and in 1-shot that mean would be the code itself. It costs
(N K)^2 pairs of a small MLP per task: nothing beside the feature extractor's cost.

Features come from `leo.feature_run`, a distmeta run whose feature layers are used frozen
(their meta-gradient is zero; they travel in the meta-parameters so that checkpoints are
whole), or else from the model's own body, meta-trained with the rest: frozen random
features would only be noise. The decoder's bias-free head has one row per class of the
task, so any number of ways works with the same meta-parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from distmeta.algorithms.base import Params
from distmeta.algorithms.protonet import PrototypeClassifier, class_prototypes, negative_squared_distances
from distmeta.algorithms.task_noise import task_normal_noise
from distmeta.algorithms.update_rules import PerParameterSGD, run_rule
from distmeta.errors import ConfigError
from distmeta.models import features

NAMESPACE = "leo"
FEATURE_RUN_FIELD = "algorithm.leo.feature_run"
RELATION_LAYERS = 3
HEADS = ("linear", "distance")
"""`algorithm.leo.head`: how logits come from features and the decoded class vectors."""
DISTANCE_DECODER_SCALE = 0.1


def glorot(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Glorot-uniform weights (out, in), the reference implementation's initialiser."""
    bound = math.sqrt(6.0 / sum(shape))
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def orthogonality_penalty(weight: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the correlation matrix of `weight`'s rows and the identity."""
    norms = weight.norm(dim=1, keepdim=True) + 1e-32
    correlation = (weight @ weight.T) / (norms @ norms.T)
    return (correlation - torch.eye(len(weight), dtype=weight.dtype, device=weight.device)).square().mean()


def decoder_orthogonality(decoder_weight: torch.Tensor) -> torch.Tensor:
    """The decoder's penalty, on its latent directions (a latents x latents correlation), as the
    reference's: its weight is (latent, features) in Sonnet's layout, torch's (features, latent)."""
    return orthogonality_penalty(decoder_weight.T)


class LEO(PrototypeClassifier):
    name = "leo"
    own_settings = {"leo": "generates a head from latent codes (algorithm.leo)"}

    def __init__(self, *args, settings: Any, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.frozen_features = bool(settings.feature_run)
        self.feature_size = self.model.head.in_features

    @classmethod
    def extra_arguments(cls, settings, output_size: int) -> dict:
        return {"ways": output_size, "settings": settings.leo}

    @classmethod
    def check_settings(cls, settings, is_classification: bool, task_name: str) -> None:
        super().check_settings(settings, is_classification, task_name)
        leo = settings.leo
        if leo.latent_size < 1:
            raise ConfigError("algorithm.leo.latent_size", f"must be at least 1, got {leo.latent_size}")
        if leo.head not in HEADS:
            raise ConfigError("algorithm.leo.head", f"unknown head {leo.head!r} (choose from {', '.join(HEADS)})")
        if leo.finetune_steps < 0:
            raise ConfigError("algorithm.leo.finetune_steps", f"must be zero or more, got {leo.finetune_steps}")
        if not (leo.finetune_lr > 0 and math.isfinite(leo.finetune_lr)):
            raise ConfigError("algorithm.leo.finetune_lr", f"must be positive, got {leo.finetune_lr}")
        for field in ("kl_weight", "encoder_penalty_weight", "orthogonality_weight"):
            value = getattr(leo, field)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"algorithm.leo.{field}", f"must be zero or more, got {value}")
        if leo.feature_run:
            # the application's checkpoint reader: imported here, as distmeta.training imports this package
            from distmeta.feature_extractor import feature_run_parameters

            feature_run_parameters(leo.feature_run, FEATURE_RUN_FIELD)

    # ---------------------------------------------------------------- meta-parameters

    def init_meta_parameters(self, model_params: Params, seed: int = 0) -> Params:
        """The feature layers (the feature run's, if one is named), then LEO's own under `leo.`:
        encoder, relation network and decoder drawn from `seed`, and the two learned rates."""
        if self.frozen_features:
            from distmeta.feature_extractor import with_feature_run  # as in check_settings

            model_params = with_feature_run(model_params, self.settings.feature_run, FEATURE_RUN_FIELD)
        like = next(iter(model_params.values()))  # the model's dtype and device
        latent, width = self.settings.latent_size, 2 * self.settings.latent_size
        generator = torch.Generator().manual_seed(seed + 1)
        own = {
            "encoder.weight": glorot((latent, self.feature_size), generator),
            **{f"relation.{i}.weight": glorot((width, width), generator) for i in range(RELATION_LAYERS)},
            "decoder.weight": glorot((self.feature_size, latent), generator) * self.decoder_scale(),
            "latent_lr": torch.full((latent,), self.inner_lr),
            "finetune_lr": torch.full((self.feature_size,), self.settings.finetune_lr),
        }
        learned = self.learned_model_parameters(model_params)
        return {**learned, **{f"{NAMESPACE}.{name}": value.to(like) for name, value in own.items()}}

    def decoder_scale(self) -> float:
        """The decoder's initial scale: the paper's Glorot weights for the linear head; a tenth of
        them for the distance head, which then starts near the prototype classifier (at full scale
        the decoded offsets, of about the features' own size, cost 16 points of training accuracy
        at the first steps over ProtoNets features and the meta-loss rose from 1.4 to 6)."""
        return 1.0 if self.settings.head == "linear" else DISTANCE_DECODER_SCALE

    def model_parameters(self, meta_params: Params) -> Params:
        return {name: value for name, value in meta_params.items() if not name.startswith(NAMESPACE + ".")}

    def adapted_names(self, model_params: Params) -> list[str]:
        """None of them: the inner loops adapt the latents and the head generated from them, which
        are no meta-parameters (so a knowledge base has nothing to warm-start, as for ProtoNets)."""
        return []

    # ---------------------------------------------------------------- generation

    def embed(self, meta_params: Params, x: torch.Tensor) -> torch.Tensor:
        """The features of `x`; constants of the meta-gradient when they come from a feature run."""
        if not self.frozen_features:
            return features(self.model, meta_params, x)
        with torch.no_grad():  # no graph through the extractor: it is most of a task's work
            return features(self.model, meta_params, x)

    def latent_distribution(self, meta_params: Params, embeddings: torch.Tensor, labels: torch.Tensor):
        """(mean, log-variance), each (ways, latent_size): encoder, relation network over the
        task's pairs of examples, then the mean over each class's examples."""
        codes = embeddings @ meta_params[f"{NAMESPACE}.encoder.weight"].T
        count = codes.shape[0]
        # (i, j, [c_i, c_j]) for every ordered pair of the task's support examples
        left, right = codes.unsqueeze(1).expand(count, count, -1), codes.unsqueeze(0).expand(count, count, -1)
        hidden = torch.cat([left, right], dim=-1)
        for i in range(RELATION_LAYERS):
            hidden = hidden @ meta_params[f"{NAMESPACE}.relation.{i}.weight"].T
            hidden = F.relu(hidden) if i < RELATION_LAYERS - 1 else hidden
        per_example = hidden.mean(dim=1)
        # a comparison rather than F.one_hot, which checks label values and so cannot run under vmap
        membership = (labels.unsqueeze(1) == torch.arange(self.ways, device=labels.device)).to(codes.dtype)
        per_class = membership.T @ per_example / membership.sum(dim=0).clamp(min=1).unsqueeze(1)
        return per_class.chunk(2, dim=-1)

    def decode(self, meta_params: Params, latents: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        """(ways, features): the head's weights, one row per class; with the distance head, the
        class prototypes moved by the decoded vectors."""
        decoded = latents @ meta_params[f"{NAMESPACE}.decoder.weight"].T
        return decoded if self.settings.head == "linear" else prototypes + decoded

    def logits(self, embeddings: torch.Tensor, head_weight: torch.Tensor) -> torch.Tensor:
        """(examples, ways): each example's score for each class's decoded vector."""
        if self.settings.head == "linear":
            return embeddings @ head_weight.T
        return negative_squared_distances(embeddings, head_weight)

    def task_conditioning(self, meta_params: Params, support_x, support_y) -> torch.Tensor:
        """The mean latent code of each class, flattened (ways x latent_size)."""
        mean, _ = self.latent_distribution(meta_params, self.embed(meta_params, support_x), support_y)
        return mean.reshape(-1)

    # ---------------------------------------------------------------- adaptation

    def generate_and_adapt(
        self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool, sample: bool
    ) -> tuple[Params, torch.Tensor]:
        """(adapted state, the meta-loss's regularisers): latent steps, then fine-tuning steps."""
        embeddings = self.embed(meta_params, support_x)
        prototypes = class_prototypes(embeddings, support_y, self.ways)
        mean, log_variance = self.latent_distribution(meta_params, embeddings, support_y)
        start = mean
        if sample:
            noise = task_normal_noise(support_x, tuple(mean.shape), mean.dtype)
            start = mean + torch.exp(0.5 * log_variance) * noise

        def latent_loss(params: Params) -> torch.Tensor:
            head_weight = self.decode(meta_params, params["latents"], prototypes)
            return self.loss(self.logits(embeddings, head_weight), support_y)

        def head_loss(params: Params) -> torch.Tensor:
            return self.loss(self.logits(embeddings, params["head.weight"]), support_y)

        latent_rule = PerParameterSGD(0.0, {"latents": meta_params[f"{NAMESPACE}.latent_lr"]})
        clip = self.inner_grad_clip
        adapted, _ = run_rule(
            latent_rule, lambda step: latent_loss, {"latents": start}, {}, steps, differentiable, self.autograd, clip
        )
        head_rule = PerParameterSGD(0.0, {"head.weight": meta_params[f"{NAMESPACE}.finetune_lr"]})
        head = {"head.weight": self.decode(meta_params, adapted["latents"], prototypes)}
        finetune_steps = self.settings.finetune_steps
        head, _ = run_rule(
            head_rule, lambda step: head_loss, head, {}, finetune_steps, differentiable, self.autograd, clip
        )
        kl = 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).mean()
        encoder_penalty = (adapted["latents"].detach() - start).square().mean()
        orthogonality = decoder_orthogonality(meta_params[f"{NAMESPACE}.decoder.weight"])
        regularisers = (
            self.settings.kl_weight * kl
            + self.settings.encoder_penalty_weight * encoder_penalty
            + self.settings.orthogonality_weight * orthogonality
        )
        return {**head, "latents": adapted["latents"]}, regularisers

    def adapt(self, meta_params: Params, support_x, support_y, steps: int, differentiable: bool) -> Params:
        """From the latent means (no sampling): what validation, test and `distmeta.load(...).adapt` use."""
        adapted, _ = self.generate_and_adapt(meta_params, support_x, support_y, steps, differentiable, sample=False)
        return adapted

    def predict(self, meta_params: Params, adapted: Params, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(meta_params, x), adapted["head.weight"])

    def query_loss(
        self, meta_params: Params, support_x, support_y, query_x, query_y, differentiable: bool | None = None
    ):
        """The meta-training objective: from sampled latents, the query loss plus the regularisers;
        its aux (loss, score) are the query loss and score alone."""
        differentiable = not self.first_order if differentiable is None else differentiable
        adapted, regularisers = self.generate_and_adapt(
            meta_params, support_x, support_y, self.inner_steps, differentiable, sample=True
        )
        outputs = self.predict(meta_params, adapted, query_x)
        loss = self.loss(outputs, query_y)
        return loss + regularisers, (loss.detach(), self.score(outputs, query_y).detach())
