"""Sequence classification with the standard Trainer: the model, the data it trains on, its optimizer, the Trainer
subclass.

`run_classification.py` (Trainer) and `train_accelerate.py` (a plain Accelerate loop) both take their model, data and
schedule from `prepare_model_and_data` and their optimizer from `build_optimizer`, so that one preset trains the same
model in both.
"""

import collections
import contextlib
import inspect
import json
import logging
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    Trainer,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

import modeling_wave  # noqa: F401  (registers the Wave classes with the Auto classes)
from wave_examples import repo_path
from wave_examples.arguments import DataArguments, ModelArguments, ScheduleArguments, parse_preset_arguments
from wave_examples.data import (
    build_compute_metrics,
    load_raw_splits,
    load_tokenizer,
    tokenize_splits,
    truncate_splits,
)
from wave_examples.hub import resolve_pretrained_path
from wave_examples.schedule import apply_schedule

logger = logging.getLogger(__name__)


def parse_classification_arguments(argv: list[str]) -> tuple:
    """`preset.json [--key value ...]` into the argument dataclasses of `run_classification.py`: `ModelArguments`,
    `DataArguments`, `TrainingArguments` and `ScheduleArguments`."""
    dataclass_types = (ModelArguments, DataArguments, TrainingArguments, ScheduleArguments)
    return check_classification_arguments(*parse_preset_arguments(dataclass_types, argv))


def check_classification_arguments(model_args, data_args, training_args, schedule_args) -> tuple:
    """Refuse a run with no model; Trainer's DDP default for a model whose every parameter gets a gradient."""
    if model_args.config_name is None and model_args.model_name_or_path is None:
        raise ValueError("Give config_name (train from scratch) or model_name_or_path (fine-tune a checkpoint).")
    if model_args.config_name is not None:
        model_args.config_name = str(repo_path(model_args.config_name))
    if training_args.ddp_find_unused_parameters is None:
        # Trainer's default (True) makes DDP search the graph every step, but every parameter of a Wave model gets
        # a gradient every step (tests/examples/test_distributed.py). A model with unused parameters needs
        # --ddp_find_unused_parameters true.
        training_args.ddp_find_unused_parameters = False
    return model_args, data_args, training_args, schedule_args


def prepare_model_and_data(model_args, data_args, training_args, schedule_args, phase=None):
    """The model, tokenizer and tokenized splits that both training loops (`run_classification.py`,
    `train_accelerate.py`) train on: the same options applied the same way. `phase(name)` is a context manager
    around each stage ("data", "model", "tokenization"); the profiler (`examples/profile_training.py`) times them.
    Returns `(model, tokenizer, tokenized, label_names)`.
    """
    phase = phase or (lambda name: contextlib.nullcontext())
    with phase("data"):
        raw, label_names = load_raw_splits(data_args, seed=training_args.seed)
    logger.info(f"Splits: { {split: len(dataset) for split, dataset in raw.items()} }; classes {label_names}")
    with phase("model"):
        checkpoint_tokenizer = model_args.model_name_or_path if model_args.model_name_or_path else None
        tokenizer = load_tokenizer(model_args.tokenizer_name or checkpoint_tokenizer)
        model = build_model(model_args, label_names)
        if model_args.word_embeddings_from:
            init_word_embeddings(model, model_args.word_embeddings_from, tokenizer)
        if model_args.freeze_word_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)

    longest = model.config.max_position_embeddings  # the schedule may shorten the texts, never lengthen them
    # The schedule and head+tail truncation need every text whole first; the tokenizer's truncation keeps the head.
    whole_first = schedule_args.schedule == "data" or data_args.truncation == "head_tail"
    with phase("tokenization"), training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_splits(raw, tokenizer, longest if whole_first else data_args.max_seq_length)
        lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
        eval_lengths = [len(ids) for ids in tokenized["validation"]["input_ids"]]
        max_seq_length = apply_schedule(lengths, schedule_args, data_args, training_args, longest, eval_lengths)
        if whole_first and max_seq_length < longest:
            tokenized = truncate_splits(tokenized, max_seq_length, data_args.truncation)
    logger.info(
        f"{type(model).__name__}: {model.num_parameters():,} parameters "
        f"({model.num_parameters(exclude_embeddings=True):,} without embeddings)"
    )
    return model, tokenizer, tokenized, label_names


def prepare_classification(model_args, data_args, training_args, schedule_args, phase=None):
    """`prepare_model_and_data` and the `ClassificationTrainer` of `run_classification.py` on it.
    Returns `(trainer, tokenized, label_names)`."""
    model, tokenizer, tokenized, label_names = prepare_model_and_data(
        model_args, data_args, training_args, schedule_args, phase
    )
    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(len(label_names)),
        card_info={"license": model_args.model_card_license, "dataset": data_args.dataset_name},
        wide_learning_rate=model_args.wide_learning_rate,
        embedding_learning_rate=model_args.embedding_learning_rate,
    )
    return trainer, tokenized, label_names


def build_model(model_args: ModelArguments, label_names: list[str]):
    """A new model from `config_name`, or the checkpoint `model_name_or_path`, with a classifier for `label_names`."""
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    source = resolve_pretrained_path(model_args.model_name_or_path or model_args.config_name)
    config = AutoConfig.from_pretrained(source, trust_remote_code=model_args.trust_remote_code, **labels)
    if model_args.config_overrides:
        apply_config_overrides(config, model_args.config_overrides)
    if model_args.model_name_or_path is None:
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=model_args.trust_remote_code)
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            source,
            config=config,
            trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        )
    except RuntimeError as error:
        if "ignore_mismatched_sizes" not in str(error):  # Transformers' refusal; its report lists the weights
            raise
        raise ValueError(
            f"{model_args.model_name_or_path} has weights whose shapes differ from this model's (e.g. a classifier "
            f"for another number of classes than the {len(label_names)} here). Pass --ignore_mismatched_sizes true "
            f"to re-initialise them (the load report above lists them)."
        ) from error


def init_word_embeddings(model, source: str, tokenizer):
    """Copy the input embeddings of the trained model `source` into `model`'s token embeddings.

    The vocabularies must be the same (token for token, id for id): a row means a token. A source table wider than the
    model is projected onto its top principal components (PCA keeps the most of the distances between tokens that
    any linear map to that width keeps); a narrower one is refused.
    """
    path = resolve_pretrained_path(source)
    source_vocab = AutoTokenizer.from_pretrained(path).get_vocab()
    if source_vocab != tokenizer.get_vocab():
        differing = sorted(set(source_vocab.items()) ^ set(tokenizer.get_vocab().items()), key=str)[:5]
        raise ValueError(
            f"word_embeddings_from={source}: its vocabulary ({len(source_vocab):,} tokens) is not the tokenizer's "
            f"({len(tokenizer):,} tokens; e.g. {differing} differ), so its rows would mean other tokens. Use a model "
            f"with the tokenizer's vocabulary, or pass its tokenizer with --tokenizer_name."
        )
    table = AutoModel.from_pretrained(path).get_input_embeddings().weight.detach().float()  # (V, source width)
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


def apply_config_overrides(config, overrides: str):
    """`key=value,...` (Transformers' `update_from_string`) or a JSON object; unknown keys are refused."""
    overrides = overrides.strip()
    if overrides.startswith("{"):
        changes = json.loads(overrides)
        unknown = sorted(key for key in changes if not hasattr(config, key))
        if unknown:
            raise ValueError(f"config_overrides names fields that {type(config).__name__} does not have: {unknown}")
        config.update(changes)
    else:
        config.update_from_string(overrides)
    if hasattr(config, "check_wave_fields"):
        config.check_wave_fields()


def last_checkpoint(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest in `output_dir` (nothing trained is lost)."""
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    if not Path(training_args.output_dir).is_dir():
        return None
    checkpoint = get_last_checkpoint(training_args.output_dir)
    if checkpoint is not None:
        logger.info(f"Resuming from {checkpoint} (found in output_dir).")
    return checkpoint


def fixed_budget_arguments(args, folder: Path, steps: int, learning_rate: float, seed: int) -> TrainingArguments:
    """Trainer settings of a fixed number of steps (linear decay after 5% warm-up, no checkpoints), for the examples
    that compare several models on one budget; `args` gives `batch_size` and `eval_batch_size`."""
    return TrainingArguments(
        output_dir=str(folder),
        max_steps=steps,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(1, steps // 20),
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.eval_batch_size,
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
    )


class ClassificationTrainer(Trainer):
    """Trainer whose model card also carries the pipeline tag, the test results and how to load the model."""

    def __init__(
        self,
        *args,
        card_info: dict | None = None,
        wide_learning_rate: float | None = None,
        embedding_learning_rate: float | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.card_info = card_info or {}
        self.wide_learning_rate = wide_learning_rate
        self.embedding_learning_rate = embedding_learning_rate

    def create_optimizer(self, model=None):
        """`build_optimizer`: the parameter groups and optimizer that `train_accelerate.py` builds too."""
        if self.optimizer is None:
            self.optimizer = build_optimizer(self.model, self.args, self.wide_learning_rate, self.embedding_learning_rate)
        return self.optimizer

    # Trainer's two gradient-norm hooks (transformers >= 5.25, which the `examples` extra requires): it clips and logs
    # the norm through torch's `clip_grad_norm_`, which refuses sparse gradients.
    def _clip_grad_norm(self, model):
        """Trainer's clipping, also for the sparse gradients of `sparse_embeddings`."""
        if not has_sparse_gradients(model):
            return super()._clip_grad_norm(model)
        return clip_sparse_aware_grad_norm(model.parameters(), self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        """The gradient norm Trainer logs, computed without clipping where gradients are sparse."""
        if grad_norm is None and has_sparse_gradients(model):
            grad_norm = clip_sparse_aware_grad_norm(model.parameters(), float("inf"))
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def create_model_card(self, *args, **kwargs):
        super().create_model_card(*args, **kwargs)
        if not self.is_world_process_zero():
            return
        path = Path(self.args.output_dir) / "README.md"
        card = ModelCard.load(path)
        card.data.pipeline_tag = "text-classification"
        card.data.license = self.card_info.get("license", card.data.license)
        card.data.metrics = ["accuracy", "f1"]
        if self.card_info.get("dataset"):
            card.data.datasets = [self.card_info["dataset"]]
        card.data.tags = sorted(set(card.data.tags or []) | {"wave-network", "text-classification"})
        test_metrics = self.card_info.get("test_metrics")
        if test_metrics:
            rows = "\n".join(f"| {key} | {value:.4f} |" for key, value in test_metrics.items() if _is_number(value))
            card.text += f"\n## Test results\n\n| metric | value |\n|---|---|\n{rows}\n"
        card.text += (
            "\n## Loading\n\n```python\nfrom transformers import pipeline\n"
            f'classifier = pipeline("text-classification", model="{self.args.hub_model_id or self.args.output_dir}", '
            "trust_remote_code=True)\n```\n"
        )
        card.save(path)


def optimizer_parameter_groups(model, weight_decay: float, wide_learning_rate=None, embedding_learning_rate=None):
    """The optimizer's parameter groups, the same for Trainer (`ClassificationTrainer`) and `train_accelerate.py`.

    Trainer's two groups (weight decay except on biases and LayerNorm weights; frozen parameters left out), then the
    wide part's weights at `wide_learning_rate` and the token and n-gram tables at `embedding_learning_rate`, each in
    groups of their own (one per weight-decay setting) when their rate is given. The schedule scales every group alike.
    """
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


def build_optimizer(model, training_args: TrainingArguments, wide_learning_rate=None, embedding_learning_rate=None):
    """The optimizer `training_args.optim` names (Trainer's own choice of class and settings) over
    `optimizer_parameter_groups`; AdamW becomes `LazyAdamW` where the model has sparse tables (`sparse_embeddings`)."""
    groups = optimizer_parameter_groups(model, training_args.weight_decay, wide_learning_rate, embedding_learning_rate)
    optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    sparse_ids = sparse_gradient_parameters(model)
    if sparse_ids and optimizer_cls is torch.optim.AdamW:  # AdamW refuses sparse gradients
        return LazyAdamW(groups, sparse_ids, **optimizer_kwargs)
    return optimizer_cls(groups, **optimizer_kwargs)


def sparse_gradient_parameters(model) -> set[int]:
    """The ids of the tables that get sparse gradients (`config.sparse_embeddings`): token, n-gram and wide tables."""
    if not getattr(model.config, "sparse_embeddings", False):
        return set()
    tables = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse]
    if getattr(model, "wide", None) is not None:
        tables.append(model.wide.weight)
    return {id(p) for p in tables}


class LazyAdamW(torch.optim.Optimizer):
    """AdamW for the dense parameters and torch's `SparseAdam` (lazy Adam: the moments and weights of the rows a batch
    touches, and no others) for the tables with sparse gradients, as one optimizer: Trainer, its learning-rate
    schedule and its checkpoints see one set of parameter groups. `SparseAdam` has no weight decay, so the tables
    get none; the dense parameters keep AdamW's."""

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


def has_sparse_gradients(model) -> bool:
    """Whether the last backward pass left a sparse gradient (the tables of `sparse_embeddings`)."""
    return any(p.grad is not None and p.grad.is_sparse for p in model.parameters())


@torch.no_grad()
def clip_sparse_aware_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """`torch.nn.utils.clip_grad_norm_` for a mix of dense and sparse gradients: the total L2 norm, and every gradient
    scaled by max_norm / norm where the norm is larger. Sparse gradients are coalesced first (a row that several
    tokens of a batch touch adds up before its norm is taken; the optimizer would coalesce them anyway)."""
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
