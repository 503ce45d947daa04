#!/usr/bin/env python
"""Train and evaluate a text classifier (a Wave Network by default) with the standard Trainer.

    python examples/run_classification.py configuration/imdb-modulation.json [--key value ...]

The only positional argument is a JSON preset from `configuration/`; any `--key value` after it overrides the
preset (every field of `ModelArguments`, `DataArguments` and `TrainingArguments`). The training set is split
80/20 into train / validation (seeded), the checkpoint best on validation is evaluated on the test set, and the
output folder holds weights, config with `auto_map`, code, tokenizer, `all_results.json` and a model card.
"""

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import transformers
from huggingface_hub import ModelCard
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared example module
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, when run from a checkout

import modeling_wave  # noqa: E402,F401  (registers the Wave classes with the Auto classes)
from wave_data import (  # noqa: E402
    DataArguments,
    build_compute_metrics,
    load_raw_splits,
    load_tokenizer,
    resolve_pretrained_path,
    tokenize_splits,
)

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ModelArguments:
    """Which model to train: a config to train from scratch, or a trained checkpoint to fine-tune."""

    config_name: str | None = field(
        default=None,
        metadata={"help": "Model config JSON to train from scratch, e.g. configuration/wave-modulation-base.json."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A trained checkpoint (folder or Hub id) to fine-tune instead."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config changes: comma-separated, e.g. 'hidden_size=256,wave_mode=interference', or a JSON object "
            """for values that are lists, e.g. '{"wide_ngram_sizes": [1, 2, 3]}'."""
        },
    )
    wide_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the wide n-gram part (`wide_ngram_sizes`), which, like any linear model on "
            "sparse features, learns best with a larger one than the wave (default: learning_rate)."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id (default: the checkpoint's, else bert-base-uncased)."}
    )
    freeze_word_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Keep the token embedding table at its initial values: the wave's projections still learn, the "
            "largest tensor of a small model gets no update (faster steps) and cannot memorise rare tokens."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow code from a Hub checkpoint."})
    model_card_license: str = field(default="apache-2.0", metadata={"help": "License written in the model card."})


class ClassificationTrainer(Trainer):
    """Trainer whose model card also carries the pipeline tag, the test results and how to load the model."""

    def __init__(self, *args, card_info: dict | None = None, wide_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.card_info = card_info or {}
        self.wide_learning_rate = wide_learning_rate

    def create_optimizer(self, model=None):
        """Trainer's optimizer, with the wide part's weights in parameter groups of their own learning rate (the
        schedule scales every group alike)."""
        optimizer = super().create_optimizer(model)
        wide = getattr(self.model, "wide", None)
        if self.wide_learning_rate is None or wide is None:
            return optimizer
        wide_ids = {id(p) for p in wide.parameters()}
        for group in list(optimizer.param_groups):
            moved = [p for p in group["params"] if id(p) in wide_ids]
            if moved:
                group["params"] = [p for p in group["params"] if id(p) not in wide_ids]
                settings = {key: value for key, value in group.items() if key != "params"}
                optimizer.add_param_group({**settings, "params": moved, "lr": self.wide_learning_rate})
        return optimizer

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


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_arguments(argv: list[str]):
    """`preset.json [--key value ...]`: the preset's values first, so that later command-line values win."""
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    args = list(argv)
    if args and args[0].endswith(".json"):
        preset_path = _existing_path(args.pop(0))
        args = _json_to_cli(json.loads(preset_path.read_text())) + args
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=args)
    if model_args.config_name is None and model_args.model_name_or_path is None:
        parser.error("Give config_name (train from scratch) or model_name_or_path (fine-tune a checkpoint).")
    if model_args.config_name is not None:
        model_args.config_name = str(_existing_path(model_args.config_name))
    if training_args.ddp_find_unused_parameters is None:
        # Trainer's default (True) makes DDP search the graph every step, but every parameter of a Wave model gets
        # a gradient every step (tests/test_distributed.py). A model with unused parameters needs
        # --ddp_find_unused_parameters true.
        training_args.ddp_find_unused_parameters = False
    return model_args, data_args, training_args


def _json_to_cli(preset: dict) -> list[str]:
    args = []
    for key, value in preset.items():
        if value is None:  # JSON null: keep the field's default (argparse would read the string "None")
            continue
        values = value if isinstance(value, list) else [value]
        args += [f"--{key}", *(json.dumps(v) if isinstance(v, dict) else str(v) for v in values)]
    return args


def _existing_path(path: str) -> Path:
    """Preset paths are written relative to the repository; accept them from any working directory."""
    for candidate in (Path(path), REPO_ROOT / path):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{path} does not exist (looked in the working directory and in {REPO_ROOT}).")


def build_model(model_args: ModelArguments, label_names: list[str]):
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }
    source = model_args.model_name_or_path or model_args.config_name
    source = resolve_pretrained_path(source)
    config = AutoConfig.from_pretrained(source, trust_remote_code=model_args.trust_remote_code, **labels)
    if model_args.config_overrides:
        overrides = model_args.config_overrides.strip()
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
    if model_args.model_name_or_path is None:
        return AutoModelForSequenceClassification.from_config(config, trust_remote_code=model_args.trust_remote_code)
    return AutoModelForSequenceClassification.from_pretrained(
        source, config=config, trust_remote_code=model_args.trust_remote_code, ignore_mismatched_sizes=True
    )


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    raw, label_names = load_raw_splits(data_args, seed=training_args.seed)
    logger.info(f"Splits: { {split: len(dataset) for split, dataset in raw.items()} }; classes {label_names}")
    checkpoint_tokenizer = model_args.model_name_or_path if model_args.model_name_or_path else None
    tokenizer = load_tokenizer(model_args.tokenizer_name or checkpoint_tokenizer)
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_splits(raw, tokenizer, data_args.max_seq_length)
    model = build_model(model_args, label_names)
    if model_args.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    logger.info(
        f"{type(model).__name__}: {model.num_parameters():,} parameters "
        f"({model.num_parameters(exclude_embeddings=True):,} without embeddings)"
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
    )

    results = {}
    if training_args.do_train:
        checkpoint = training_args.resume_from_checkpoint
        if checkpoint is None and Path(training_args.output_dir).is_dir():
            checkpoint = get_last_checkpoint(training_args.output_dir)
            if checkpoint is not None:
                logger.info(f"Resuming from {checkpoint} (found in output_dir).")
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        results.update(train_result.metrics)

    for split, prefix in (("validation", "eval"), ("test", "test")):
        metrics = trainer.evaluate(tokenized[split], metric_key_prefix=prefix)
        metrics[f"{prefix}_samples"] = len(tokenized[split])
        trainer.log_metrics(prefix, metrics)
        trainer.save_metrics(prefix, metrics)
        results.update(metrics)

    trainer.card_info["test_metrics"] = {k: v for k, v in results.items() if k.startswith("test_")}
    card_kwargs = {"tasks": "text-classification", "dataset": data_args.dataset_name or data_args.data_dir}
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
    else:
        trainer.create_model_card(**card_kwargs)
    return results


if __name__ == "__main__":
    main()
