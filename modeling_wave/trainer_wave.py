"""`WaveTrainer` and `WaveTrainingArguments`: the standard `Trainer` with the recipe's training switches, as
sentence-transformers ships its `SentenceTransformerTrainer`.

    from modeling_wave import WaveTrainer, WaveTrainingArguments

    args = WaveTrainingArguments("out", sparse_embeddings=True, wide_learning_rate=0.03, learning_rate=1e-3)
    trainer = WaveTrainer(model=model, args=args, train_dataset=..., processing_class=tokenizer)
    trainer.train()

With `sparse_embeddings=True` the model's token, n-gram and wide tables get sparse gradients for the run
(`model.sparse_embeddings_enable()`), AdamW becomes `LazyAdamW` and clipping takes sparse gradients. None of it is
saved with the model: every checkpoint trains with the plain `Trainer` (dense) as well.
"""

from dataclasses import dataclass, field

import torch

from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments
from transformers.utils import logging

from .optimization_wave import (
    clip_grad_norm_sparse_aware_,
    create_wave_optimizer,
    enable_sparse_embeddings,
    has_sparse_gradients,
)

logger = logging.get_logger(__name__)


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


class WaveTrainer(Trainer):
    """`Trainer` for Wave models: `WaveTrainingArguments`' switches (sparse tables, per-table learning rates), the
    optimizer of `create_wave_optimizer` and gradient clipping that takes sparse gradients. With plain
    `TrainingArguments`, or `sparse_embeddings=False` and no per-table rates, it trains exactly as `Trainer`.
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


__all__ = ["WaveTrainer", "WaveTrainingArguments", "init_word_embeddings"]
