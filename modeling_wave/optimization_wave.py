"""What a training loop needs to train a Wave classifier the recipe's way (`configuration/train/wave-recipe.json`), as
`transformers.optimization` holds Transformers' optimizers and schedules: parameter groups with their own learning
rates for the tables, `LazyAdamW` for sparse tables, gradient clipping that takes sparse gradients, and the schedule
that the recipe derives from the training set.

[`WaveTrainer`] uses all of it; a loop of your own (Accelerate, plain PyTorch) calls these functions:

    enable_sparse_embeddings(model)                        # before DDP wraps the model
    optimizer = create_wave_optimizer(model, training_args)
    ...
    loss.backward()
    clip_grad_norm_sparse_aware_(model.parameters(), max_norm=1.0)
    optimizer.step()

Dense and sparse tables, what each costs: docs/training.md#dense-and-sparse-tables.
"""

import collections
import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from transformers import Trainer, TrainingArguments
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Optimizers of `TrainingArguments.optim` that step sparse gradients as they are; AdamW becomes `LazyAdamW`.
SPARSE_CAPABLE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adagrad, torch.optim.SparseAdam)


def enable_sparse_embeddings(model, sharded: bool = False) -> bool:
    """`model.sparse_embeddings_enable()` where the run can step sparse gradients; whether it did.

    Refused by name: a model that is not a Wave model, and `sharded` runs (DeepSpeed, FSDP: they flatten gradients into
    dense shards). Across processes DDP all-reduces sparse gradients over gloo only (torch has no sparse all-reduce
    for NCCL): under another backend the tables stay dense for the run, with a warning, and train as the plain
    Trainer trains them. Call it before DDP wraps the model: DDP reads which tables are sparse when it wraps.
    """
    if not hasattr(model, "sparse_embeddings_enable"):
        raise ValueError(
            f"sparse_embeddings=True: {type(model).__name__} is not a Wave model (no sparse_embeddings_enable). Train "
            "it with sparse_embeddings=False."
        )
    if sharded:
        raise ValueError(
            "sparse_embeddings=True cannot run under DeepSpeed or FSDP, which shard flat dense gradients: use DDP "
            "(torchrun, accelerate launch --multi_gpu) or sparse_embeddings=False."
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        backend = torch.distributed.get_backend()
        if backend != "gloo":
            logger.warning(
                f"sparse_embeddings=True needs an all-reduce of sparse gradients, which the {backend} backend does "
                "not have (torch's sparse all-reduce is gloo's): the tables stay dense for this run (AdamW, plain "
                "clipping: the same model, slower steps). Launch with --ddp_backend gloo to keep them sparse."
            )
            return False
    model.sparse_embeddings_enable()
    return True


def sparse_gradient_parameters(model: nn.Module) -> set[int]:
    """The ids of the parameters that get sparse gradients: the weights of the embedding tables made sparse
    (`sparse_embeddings_enable()`)."""
    return {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding) and m.sparse}


def has_sparse_gradients(parameters) -> bool:
    """Whether the last backward pass left a sparse gradient on any of `parameters`."""
    return any(p.grad is not None and p.grad.is_sparse for p in parameters)


@torch.no_grad()
def clip_grad_norm_sparse_aware_(parameters, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for a mix of dense and sparse gradients: the total L2 norm, and every gradient
    scaled by max_norm / norm where the norm is larger (`max_norm=inf`: the norm only). Sparse gradients are
    coalesced first: a row that several tokens of a batch touch adds up before its norm is taken (the optimizer would
    coalesce them anyway)."""
    parameters = [p for p in parameters if p.grad is not None]
    for p in parameters:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    norms = [(p.grad.values() if p.grad.is_sparse else p.grad).norm() for p in parameters]
    total = torch.stack(norms).norm() if norms else torch.tensor(0.0)
    if max_norm < float("inf") and total > max_norm:
        for p in parameters:
            p.grad.mul_(max_norm / (total + 1e-6))
    return total


class LazyAdamW(torch.optim.Optimizer):
    """AdamW for the dense parameters and torch's `SparseAdam` (lazy Adam: the moments and weights of the rows a batch
    touches, and no others) for the tables with sparse gradients, as one optimizer: Trainer, its learning-rate
    schedule and its checkpoints see one set of parameter groups. `SparseAdam` has no weight decay, so the tables
    get none; the dense parameters keep AdamW's.

    Args:
        param_groups: parameter groups as for any torch optimizer (`wave_parameter_groups`).
        sparse_ids: the ids of the parameters whose gradients are sparse (`sparse_gradient_parameters`).
        **defaults: AdamW's settings (`lr`, `betas`, `eps`, `weight_decay`, ...); SparseAdam takes those it knows.
    """

    def __init__(self, param_groups: list[dict], sparse_ids: set[int], **defaults):
        dense_groups, sparse_groups = [], []
        for group in param_groups:
            settings = {key: value for key, value in group.items() if key != "params"}
            for params, groups in ((False, dense_groups), (True, sparse_groups)):
                chosen = [p for p in group["params"] if (id(p) in sparse_ids) == params]
                if chosen:
                    groups.append({**settings, "params": chosen})
        sparse_settings = ("lr", "betas", "eps", "maximize")
        sparse_groups = [{k: v for k, v in g.items() if k in (*sparse_settings, "params")} for g in sparse_groups]
        adamw_settings = inspect.signature(torch.optim.AdamW).parameters  # Adam's defaults hold Adam-only keys too
        self.dense = torch.optim.AdamW(dense_groups, **{k: v for k, v in defaults.items() if k in adamw_settings})
        self.sparse = torch.optim.SparseAdam(sparse_groups, **{k: v for k, v in defaults.items() if k in sparse_settings})
        super().__init__([p for g in param_groups for p in g["params"]], defaults)
        self.param_groups = self.dense.param_groups + self.sparse.param_groups  # the same dicts: schedules reach both
        self.state = collections.ChainMap(self.dense.state, self.sparse.state)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        self.dense.step()
        self.sparse.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.dense.zero_grad(set_to_none=set_to_none)
        self.sparse.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict()}

    def load_state_dict(self, state_dict: dict):
        self.dense.load_state_dict(state_dict["dense"])
        self.sparse.load_state_dict(state_dict["sparse"])
        self.param_groups = self.dense.param_groups + self.sparse.param_groups


def wave_parameter_groups(model, weight_decay: float, wide_learning_rate=None, embedding_learning_rate=None) -> list:
    """The optimizer's parameter groups: Trainer's two (weight decay except on biases and LayerNorm weights; frozen
    parameters left out), then the wide part's weights at `wide_learning_rate` and the token and n-gram tables at
    `embedding_learning_rate`, each in groups of their own (one per weight-decay setting) when their rate is given.
    A learning-rate schedule scales every group alike."""
    decay_names = set(Trainer.get_decay_parameter_names(None, model))  # Trainer's rule; the method reads no state
    own_rates = []  # (ids, learning rate), in the order their groups follow Trainer's two
    wide = getattr(model, "wide", None)
    if wide_learning_rate is not None and wide is not None:
        own_rates.append(({id(p) for p in wide.parameters()}, wide_learning_rate))
    if embedding_learning_rate is not None:
        ngram_table = getattr(model.base_model.embeddings, "ngram_embeddings", None)
        tables = [m for m in (model.get_input_embeddings(), ngram_table) if m is not None]
        own_rates.append(({id(m.weight) for m in tables}, embedding_learning_rate))
    with_own_rate = set().union(*(ids for ids, _ in own_rates))

    def group(chosen, decays: bool, **settings) -> dict:
        params = [p for n, p in model.named_parameters() if p.requires_grad and (n in decay_names) == decays and chosen(p)]
        return {"params": params, "weight_decay": weight_decay if decays else 0.0, **settings}

    groups = [group(lambda p: id(p) not in with_own_rate, decays) for decays in (True, False)]
    for ids, rate in own_rates:
        own = [group(lambda p, ids=ids: id(p) in ids, decays, lr=rate) for decays in (True, False)]
        groups += [g for g in own if g["params"]]
    return groups


def create_wave_optimizer(model, args: TrainingArguments) -> torch.optim.Optimizer:
    """The optimizer `args.optim` names (Trainer's own choice of class and settings) over `wave_parameter_groups`, with
    `args.wide_learning_rate` and `args.embedding_learning_rate` where `args` has them ([`WaveTrainingArguments`]).
    Where the model has sparse tables, AdamW becomes [`LazyAdamW`]; an optimizer that cannot step sparse gradients is
    refused by name."""
    groups = wave_parameter_groups(
        model,
        args.weight_decay,
        getattr(args, "wide_learning_rate", None),
        getattr(args, "embedding_learning_rate", None),
    )
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    sparse_ids = sparse_gradient_parameters(model)
    if not sparse_ids:
        return optimizer_cls(groups, **optimizer_kwargs)
    if optimizer_cls is torch.optim.AdamW:  # AdamW refuses sparse gradients
        return LazyAdamW(groups, sparse_ids, **optimizer_kwargs)
    if isinstance(optimizer_cls, type) and issubclass(optimizer_cls, SPARSE_CAPABLE_OPTIMIZERS):
        return optimizer_cls(groups, **optimizer_kwargs)
    optim = getattr(args.optim, "value", args.optim)
    raise ValueError(
        f"optim={optim} cannot step the sparse gradients of sparse_embeddings: use optim adamw_torch (LazyAdamW for "
        "the tables), sgd or adagrad, or train with sparse_embeddings=False."
    )


@dataclass
class WaveSchedule:
    """A training schedule derived from the data (`wave_schedule`)."""

    max_seq_length: int  # keeps `length_coverage` of the training texts whole
    max_steps: int  # optimizer updates
    epochs: float  # max_steps in epochs
    eval_steps: int | None  # evaluate every this many updates; None: no evaluation during training


def covering_length(lengths: list[int], coverage: float, cap: int) -> int:
    """The smallest length (a multiple of 8) that keeps `coverage` of the texts whole, at most `cap`."""
    length = int(np.quantile(np.asarray(lengths), coverage, method="higher"))
    return min(cap, 8 * math.ceil(length / 8))


def wave_schedule(
    lengths: list[int],
    global_batch_size: int,
    eval_tokens: int = 0,
    min_updates: int = 500,
    max_epochs: float = 30.0,
    max_train_tokens: int = 4_000_000,
    evaluations: int = 6,
    eval_share: float = 0.25,
    length_coverage: float = 0.99,
) -> WaveSchedule:
    """The recipe's schedule for a training set whose token lengths (already capped at the model's positions) are
    `lengths`, and a validation set of `eval_tokens` tokens:

        updates  = steps per epoch x epochs, epochs = min_updates / steps per epoch, clipped to [1, max_epochs] and to
                   the token budget (max_train_tokens / tokens per epoch, at least 1 epoch)
        evaluate = every updates / evaluations steps, with as many evaluations as `eval_share` of the training tokens
                   pays for (at most `evaluations`); fewer than two: none during training
        length   = the length that keeps `length_coverage` of the training texts whole

    A small set (TREC: 68 updates an epoch at batch 64) gets many epochs; a large one (IMDB: 313 updates) one or two.
    The defaults were chosen on validation (docs/recipe.md); the recipe's preset sets max_train_tokens=12,000,000.
    """
    if not lengths:
        raise ValueError("wave_schedule needs the token lengths of at least one training text.")
    steps_per_epoch = math.ceil(len(lengths) / global_batch_size)
    epochs = min(max_epochs, max(1.0, min_updates / steps_per_epoch))
    epochs = min(epochs, max(1.0, max_train_tokens / sum(lengths)))
    max_steps = math.ceil(epochs * steps_per_epoch)
    affordable = evaluations if not eval_tokens else int(eval_share * epochs * sum(lengths) / eval_tokens)
    evaluations = min(evaluations, affordable)
    return WaveSchedule(
        max_seq_length=covering_length(lengths, length_coverage, cap=max(lengths)),
        max_steps=max_steps,
        epochs=max_steps / steps_per_epoch,
        eval_steps=math.ceil(max_steps / evaluations) if evaluations >= 2 else None,
    )


__all__ = [
    "LazyAdamW",
    "WaveSchedule",
    "clip_grad_norm_sparse_aware_",
    "create_wave_optimizer",
    "enable_sparse_embeddings",
    "has_sparse_gradients",
    "sparse_gradient_parameters",
    "wave_parameter_groups",
    "wave_schedule",
]
