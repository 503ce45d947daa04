#!/usr/bin/env python
"""Train and evaluate a text classifier (a Wave Network by default) with the standard Trainer.

    python examples/run_classification.py configuration/train/imdb-modulation.json [--key value ...]

The only positional argument is a JSON preset from `configuration/`; any `--key value` after it overrides the
preset (every field of `ModelArguments`, `DataArguments`, `WaveTrainingArguments` and `ScheduleArguments`). The
training set is split 80/20 into train / validation (seeded), the checkpoint best on validation is evaluated on the
test set, and the output folder holds weights, config with `auto_map`, code, tokenizer, `all_results.json` and a model card.
"""

import logging
import sys

import transformers
from transformers import set_seed

from wave_examples.training import last_checkpoint, parse_classification_arguments, prepare_classification

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args, schedule_args = parse_classification_arguments(
        sys.argv[1:] if argv is None else argv
    )
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)

    trainer, tokenized, _ = prepare_classification(model_args, data_args, training_args, schedule_args)

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
