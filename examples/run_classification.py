#!/usr/bin/env python
"""Train and evaluate a text classifier (a Wave Network by default) with the standard Trainer.

    python examples/run_classification.py configuration/imdb-modulation.json [--key value ...]

The only positional argument is a JSON preset from `configuration/`; any `--key value` after it overrides the
preset (every field of `ModelArguments`, `DataArguments` and `TrainingArguments`). The training set is split
80/20 into train / validation (seeded), the checkpoint best on validation is evaluated on the test set, and the
output folder holds weights, config with `auto_map`, code, tokenizer, `all_results.json` and a model card.
"""

import logging
import sys

import transformers
from transformers import set_seed

from wave_examples.data import build_compute_metrics, load_raw_splits, load_tokenizer, tokenize_splits, truncate_splits
from wave_examples.schedule import apply_schedule
from wave_examples.training import (
    ClassificationTrainer,
    build_model,
    init_word_embeddings,
    last_checkpoint,
    parse_classification_arguments,
)

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args, schedule_args = parse_classification_arguments(
        sys.argv[1:] if argv is None else argv
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    raw, label_names = load_raw_splits(data_args, seed=training_args.seed)
    logger.info(f"Splits: { {split: len(dataset) for split, dataset in raw.items()} }; classes {label_names}")
    checkpoint_tokenizer = model_args.model_name_or_path if model_args.model_name_or_path else None
    tokenizer = load_tokenizer(model_args.tokenizer_name or checkpoint_tokenizer)
    model = build_model(model_args, label_names)
    if model_args.word_embeddings_from:
        init_word_embeddings(model, model_args.word_embeddings_from, tokenizer)
    if model_args.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)

    longest = model.config.max_position_embeddings  # the schedule may shorten the texts, never lengthen them
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_splits(
            raw, tokenizer, longest if schedule_args.schedule == "data" else data_args.max_seq_length
        )
    lengths = [len(ids) for ids in tokenized["train"]["input_ids"]]
    max_seq_length = apply_schedule(lengths, schedule_args, data_args, training_args, cap=longest)
    if schedule_args.schedule == "data" and max_seq_length < longest:
        tokenized = truncate_splits(tokenized, max_seq_length)
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
        embedding_learning_rate=model_args.embedding_learning_rate,
    )

    results = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=last_checkpoint(training_args))
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
