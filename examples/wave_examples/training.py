"""Sequence classification for the example scripts: the model, the data it trains on, the Trainer with its model card.

`run_classification.py` (Trainer) and `train_accelerate.py` (a plain Accelerate loop) both take their model, data and
schedule from `prepare_model_and_data`, and their optimizer from the package (`modeling_wave.create_wave_optimizer`,
which `WaveTrainer` uses), so that one preset trains the same model in both.
"""

import contextlib
import json
import logging
from pathlib import Path

from huggingface_hub import ModelCard
from transformers import AutoConfig, AutoModelForSequenceClassification, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from modeling_wave import WaveTrainer, WaveTrainingArguments, init_word_embeddings
from wave_examples import repo_path
from wave_examples.arguments import DataArguments, ModelArguments, ScheduleArguments, parse_preset_arguments
from wave_examples.data import (
    build_compute_metrics,
    load_raw_splits,
    load_tokenizer,
    tokenize_splits,
    truncate_splits,
)
from wave_examples.distillation import add_teacher_logits, augment_training_set, load_teacher
from wave_examples.hub import resolve_pretrained_path
from wave_examples.schedule import apply_schedule

logger = logging.getLogger(__name__)


def parse_classification_arguments(argv: list[str]) -> tuple:
    """`preset.json [--key value ...]` into the argument dataclasses of `run_classification.py`: `ModelArguments`,
    `DataArguments`, `WaveTrainingArguments` and `ScheduleArguments`."""
    dataclass_types = (ModelArguments, DataArguments, WaveTrainingArguments, ScheduleArguments)
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
        if data_args.teacher:
            raw["train"] = distillation_set(raw["train"], data_args, label_names, training_args)
    logger.info(f"Splits: { {split: len(dataset) for split, dataset in raw.items()} }; classes {label_names}")
    with phase("model"):
        checkpoint_tokenizer = model_args.model_name_or_path if model_args.model_name_or_path else None
        tokenizer = load_tokenizer(model_args.tokenizer_name or checkpoint_tokenizer)
        model = build_model(model_args, label_names)
        if model_args.word_embeddings_from:
            init_word_embeddings(model, resolve_pretrained_path(model_args.word_embeddings_from), tokenizer)
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


def distillation_set(train, data_args, label_names: list[str], training_args):
    """The training texts and their augmented copies, with the teacher's logits (cached by `datasets`)."""
    teacher_path = str(resolve_pretrained_path(data_args.teacher))
    teacher, teacher_tokenizer = load_teacher(teacher_path, label_names)
    with training_args.main_process_first(desc="teacher logits"):
        train = augment_training_set(
            train, data_args.augmented_copies, training_args.seed, data_args.mask_prob, data_args.ngram_prob
        )
        train = add_teacher_logits(train, teacher, teacher_tokenizer, teacher_path)
    logger.info(f"Distillation from {teacher_path}: {len(train):,} training texts ({data_args.augmented_copies} "
                "augmented copies of each, labelled by the teacher alone).")  # fmt: skip
    return train


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


class ClassificationTrainer(WaveTrainer):
    """`WaveTrainer` whose model card also carries the pipeline tag, the test results and how to load the model."""

    def __init__(self, *args, card_info: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.card_info = card_info or {}

    def create_model_card(self, *args, **kwargs):
        super().create_model_card(*args, **kwargs)
        if not self.is_world_process_zero():
            return
        path = Path(self.args.output_dir) / "README.md"
        card = ModelCard.load(path)
        base = card.data.base_model
        if isinstance(base, str) and (base.endswith(".json") or Path(base).exists()):
            # Trainer takes the config a new model was built from for a Hub model it was fine-tuned from.
            card.data.base_model = None
            fine_tuned = f"This model is a fine-tuned version of [{base}](https://huggingface.co/{base}) on "
            card.text = card.text.replace(fine_tuned, "This model was trained from scratch on ")
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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
