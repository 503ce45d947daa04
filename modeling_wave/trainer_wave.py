"""`WaveTrainer` and `WaveTrainingArguments`: the standard `Trainer` with the recipe's training switches, as
sentence-transformers ships its `SentenceTransformerTrainer`.

    from modeling_wave import WaveTrainer, WaveTrainingArguments

    args = WaveTrainingArguments("out", sparse_embeddings=True, wide_learning_rate=0.03, learning_rate=1e-3)
    trainer = WaveTrainer(model=model, args=args, train_dataset=..., processing_class=tokenizer)
    trainer.train()

With `sparse_embeddings=True` the model's token, n-gram and wide tables get sparse gradients for the run
(`model.sparse_embeddings_enable()`), AdamW becomes `LazyAdamW` and clipping takes sparse gradients. None of it is
saved with the model: every checkpoint trains with the plain `Trainer` (dense) as well. A training set with a
`teacher_logits` column trains a student of that teacher (`distillation_loss`, docs/distillation.md).
"""

from dataclasses import dataclass, field

import torch
from torch import nn

from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments
from transformers.utils import logging

from .optimization_wave import (
    clip_grad_norm_sparse_aware_,
    create_wave_optimizer,
    enable_sparse_embeddings,
    has_sparse_gradients,
)

logger = logging.get_logger(__name__)

DISTILLATION_LOSSES = ("mse", "kl")
TEACHER_LOGITS = "teacher_logits"  # the training set's column of a teacher's logits, for distillation


@dataclass
class WaveTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the recipe's switches, read by [`WaveTrainer`] (and by `create_wave_optimizer`)."""

    sparse_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Sparse gradients for the token, n-gram and wide tables (only the rows a batch touches): the "
            "recipe's speed. AdamW becomes LazyAdamW (lazy Adam, no weight decay on the tables). Not saved with the "
            "model. Across processes it needs DDP over gloo; over NCCL the tables stay dense (a warning says so)."
        },
    )
    wide_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the wide n-gram part (`wide_ngram_sizes`), which, like any linear model on "
            "sparse features, learns best with a larger one than the wave (default: learning_rate)."
        },
    )
    embedding_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the token and n-gram embedding tables (default: learning_rate)."},
    )
    distillation_alpha: float = field(
        default=0.5,
        metadata={
            "help": "Distillation (a `teacher_logits` column in the training set): the weight of the teacher's soft "
            "targets in the loss; the labels get 1 - alpha. Rows labelled -100 (augmented texts) learn from the "
            "teacher alone."
        },
    )
    distillation_loss: str = field(
        default="mse",
        metadata={"help": "'mse' on logits (Tang et al. 2019's best) or 'kl' on softened probabilities (Hinton et al.)."},
    )
    distillation_temperature: float = field(
        default=1.0, metadata={"help": "Temperature of the 'kl' distillation loss (its gradient is scaled by T^2)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.distillation_alpha <= 1:
            raise ValueError(f"distillation_alpha must be in [0, 1], got {self.distillation_alpha!r}.")
        if self.distillation_loss not in DISTILLATION_LOSSES:
            raise ValueError(f"distillation_loss must be one of {DISTILLATION_LOSSES}, got {self.distillation_loss!r}.")
        if not self.distillation_temperature > 0:
            raise ValueError(f"distillation_temperature must be > 0, got {self.distillation_temperature!r}.")


class WaveTrainer(Trainer):
    """`Trainer` for Wave models: `WaveTrainingArguments`' switches (sparse tables, per-table learning rates), the
    optimizer of `create_wave_optimizer`, gradient clipping that takes sparse gradients, and the distillation loss
    where the training set has a `teacher_logits` column (`distillation_loss`). With plain `TrainingArguments`, no
    `teacher_logits`, `sparse_embeddings=False` and no per-table rates, it trains exactly as `Trainer`.
    """

    def __init__(self, model=None, args: TrainingArguments | None = None, *positional, **kwargs):
        super().__init__(model, args, *positional, **kwargs)
        if getattr(self.args, "sparse_embeddings", False):  # before `train` wraps the model in DDP, which must know
            enable_sparse_embeddings(self.model, sharded=self.is_deepspeed_enabled or self.is_fsdp_enabled)

    def create_optimizer(self, model=None):
        """`create_wave_optimizer`: Trainer's choice of optimizer over the Wave parameter groups (`LazyAdamW` for
        sparse tables)."""
        if self.optimizer is None and self.optimizer_cls_and_kwargs is None:
            self.optimizer = create_wave_optimizer(self.model if model is None else model, self.args)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Trainer's loss, or with a `teacher_logits` column the distillation loss (`distillation_loss`)."""
        teacher_logits = inputs.pop(TEACHER_LOGITS, None)
        if teacher_logits is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = distillation_loss(
            outputs.logits,
            teacher_logits,
            labels,
            alpha=getattr(self.args, "distillation_alpha", 0.5),
            kind=getattr(self.args, "distillation_loss", "mse"),
            temperature=getattr(self.args, "distillation_temperature", 1.0),
        )
        return (loss, outputs) if return_outputs else loss

    def _set_signature_columns_if_needed(self):
        """Trainer keeps the dataset columns that `forward` names; `teacher_logits` is the loss's, kept too. (A
        private hook, pinned by tests/model/test_trainer_wave.py.)"""
        super()._set_signature_columns_if_needed()
        if TEACHER_LOGITS not in self._signature_columns:
            self._signature_columns.append(TEACHER_LOGITS)

    # Trainer's two gradient-norm hooks (private, transformers >= 5.25; tests/model/test_trainer_wave.py pins their
    # signatures, so that an upgrade that renames them fails loudly instead of leaving sparse gradients unclipped):
    # Trainer clips and logs the norm with torch's `clip_grad_norm_`, which refuses sparse gradients.
    def _clip_grad_norm(self, model):
        """Trainer's clipping, also for sparse gradients."""
        if not has_sparse_gradients(model.parameters()):
            return super()._clip_grad_norm(model)
        self.accelerator.unscale_gradients()  # what accelerator.clip_grad_norm_ does first (fp16)
        return clip_grad_norm_sparse_aware_(model.parameters(), self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        """The gradient norm Trainer logs, computed without clipping where gradients are sparse."""
        if grad_norm is None and has_sparse_gradients(model.parameters()):
            grad_norm = clip_grad_norm_sparse_aware_(model.parameters(), float("inf"))
        return super()._get_grad_norm(model, grad_norm=grad_norm)


def distillation_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 0.5,
    kind: str = "mse",
    temperature: float = 1.0,
) -> torch.Tensor:
    """(1 - alpha) x cross-entropy on the labels + alpha x the teacher's soft targets, (B, C), (B, C), (B,) -> ().

    The soft part is the mean squared error between the logits (Tang et al. 2019, "Distilling Task-Specific Knowledge
    from BERT into Simple Neural Networks": best for their BiLSTM student) or, with `kind="kl"`, T^2 x KL(teacher ||
    student) of the probabilities softened by the temperature T (Hinton et al. 2015). Rows labelled -100 (texts the
    teacher labelled, such as augmented ones) have no hard part; a batch of them only is learned from the teacher.
    """
    if kind not in DISTILLATION_LOSSES:
        raise ValueError(f"distillation_loss must be one of {DISTILLATION_LOSSES}, got {kind!r}.")
    if teacher_logits.shape != logits.shape:
        raise ValueError(
            f"teacher_logits have shape {tuple(teacher_logits.shape)}, the student's logits {tuple(logits.shape)}: the "
            "teacher must score the student's classes."
        )
    teacher_logits = teacher_logits.to(logits.dtype)
    if kind == "mse":
        soft = nn.functional.mse_loss(logits, teacher_logits)
    else:
        log_student = nn.functional.log_softmax(logits / temperature, dim=-1)
        log_teacher = nn.functional.log_softmax(teacher_logits / temperature, dim=-1)
        soft = nn.functional.kl_div(log_student, log_teacher, log_target=True, reduction="batchmean") * temperature**2
    labelled = labels != -100
    hard = nn.functional.cross_entropy(logits[labelled], labels[labelled]) if labelled.any() else logits.new_zeros(())
    return (1 - alpha) * hard + alpha * soft


def init_word_embeddings(model, source: str, tokenizer):
    """Copy the input embeddings of the trained model `source` (a folder or Hub id) into `model`'s token embeddings,
    as the recipe starts from MiniLM's (`sentence-transformers/all-MiniLM-L6-v2`).

    The vocabularies must be the same (token for token, id for id): a row means a token. A source table wider than the
    model is projected onto its top principal components (PCA keeps the most of the distances between tokens that
    any linear map to that width keeps); a narrower one is refused.
    """
    source_vocab = AutoTokenizer.from_pretrained(source).get_vocab()
    if source_vocab != tokenizer.get_vocab():
        differing = sorted(set(source_vocab.items()) ^ set(tokenizer.get_vocab().items()), key=str)[:5]
        raise ValueError(
            f"word_embeddings_from={source}: its vocabulary ({len(source_vocab):,} tokens) is not the tokenizer's "
            f"({len(tokenizer):,} tokens; e.g. {differing} differ), so its rows would mean other tokens. Use a model "
            f"with the tokenizer's vocabulary, or pass its tokenizer with --tokenizer_name."
        )
    table = AutoModel.from_pretrained(source).get_input_embeddings().weight.detach().float()  # (V, source width)
    target = model.get_input_embeddings().weight
    if table.shape[0] != target.shape[0] or table.shape[1] < target.shape[1]:
        raise ValueError(
            f"word_embeddings_from={source}: its table is {tuple(table.shape)}, the model's {tuple(target.shape)}: "
            f"it needs vocab_size={table.shape[0]} and hidden_size <= {table.shape[1]}."
        )
    if table.shape[1] > target.shape[1]:
        centred = table - table.mean(dim=0)
        _, _, components = torch.linalg.svd(centred, full_matrices=False)  # rows: principal directions, largest first
        table = centred @ components[: target.shape[1]].T  # (V, hidden_size)
    with torch.no_grad():
        target.copy_(table.to(target.dtype))
    logger.info(f"Token embeddings initialised from {source} ({tuple(table.shape)}).")


__all__ = ["WaveTrainer", "WaveTrainingArguments", "distillation_loss", "init_word_embeddings"]
