#!/usr/bin/env python
"""Does masked-language-model pre-training help a Wave Network classify IMDB reviews?

    python examples/pretrain_mlm.py --data_dir ../shared/data/imdb --output_dir runs/pretrain-mlm [--quick]

1. Pre-train `WaveForMaskedLM` (output projection tied to the input embeddings) on the raw review texts of the IMDB
   *training* split with `DataCollatorForLanguageModeling` (15% of the tokens masked, BERT's 80/10/10 recipe). The
   held-out validation part (20% of the training split, as in the paper) gives the masked-LM loss; the test set is
   never seen.
2. Fine-tune `WaveForSequenceClassification` twice with the same arguments, seed, data order and number of steps:
   from the pre-trained encoder, and from random initialisation. Both are scored on the test set.

Everything lands in `output_dir`: the pre-trained masked LM in `mlm/` (with tokenizer and `auto_map`, so
`pipeline("fill-mask", model=output_dir + "/mlm")` works) and the numbers in `results.json`.

`--quick` trains a tiny model for a few steps on a few texts: it checks that everything runs (the tests use it);
its accuracies mean nothing.

Full run (d = 256, one Wave block; 1,500 pre-training steps of 32 texts x 128 tokens, then 300 fine-tuning steps of
32 texts x 256 tokens for each of 3 seeds and both initialisations; 20,000 training / 5,000 validation / 25,000 test
reviews). On two CPU threads a pre-training step takes 2.3 s (most of it the 256 x 30,522 vocabulary projection) and
the six fine-tunings with their evaluations 28 min: about 1.5 hours in all. The README's run pre-trained for one
epoch (`--mlm_steps 625`, 24 min):

    python examples/pretrain_mlm.py --data_dir ../shared/data/imdb --output_dir runs/pretrain-mlm [--mlm_steps 625]
"""

import logging
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import (
    AutoConfig,
    DataCollatorForLanguageModeling,
    Trainer,
    set_seed,
)

from modeling_wave import WaveConfig, WaveForMaskedLM, WaveForSequenceClassification
from wave_examples import option
from wave_examples.arguments import WaveSizeArguments, run_settings, start_experiment, write_results
from wave_examples.data import build_compute_metrics, load_raw_splits, load_tokenizer, tokenize_splits
from wave_examples.training import fixed_budget_arguments

logger = logging.getLogger(__name__)


@dataclass
class PretrainArguments(WaveSizeArguments):
    """The model, the two training budgets and where the results go."""

    output_dir: str = option("runs/pretrain-mlm", "Where the MLM and results.json go.")
    mlm_probability: float = option(0.15, "Share of the tokens masked for pre-training.")
    mlm_max_seq_length: int = option(128, "Tokens per text in pre-training (the vocabulary projection dominates).")
    mlm_steps: int = option(1500, "Pre-training steps.")
    mlm_learning_rate: float = option(1e-3, "Pre-training learning rate.")
    finetune_steps: int = option(300, "Fine-tuning steps, the same for both inits.")
    finetune_learning_rate: float = option(1e-3, "Fine-tuning learning rate (paper: 1e-3).")
    finetune_seeds: str = option(
        "42,43,44", "Comma-separated seeds (classifier init, dropout, data order); both inits run with each."
    )
    mlm_checkpoint: str | None = option(
        None, "A saved WaveForMaskedLM folder to fine-tune instead of pre-training anew."
    )
    batch_size: int = option(32, "Texts per step, pre-training and fine-tuning.")
    eval_batch_size: int = option(128, "Texts per evaluation batch.")


QUICK = dict(hidden_size=32, intermediate_size=64, mlm_max_seq_length=32, mlm_steps=4, finetune_steps=4)
QUICK.update(finetune_seeds="42", batch_size=8, eval_batch_size=32)
QUICK_DATA = dict(max_seq_length=64, max_train_samples=64, max_eval_samples=32, max_test_samples=32)


def pretrain(args, raw, tokenizer, config, output_dir: Path) -> dict:
    """Masked-LM pre-training on the training split's texts; the validation texts give the held-out MLM loss."""

    def tokenize(batch):
        return tokenizer(
            batch["text"], truncation=True, max_length=args.mlm_max_seq_length, return_special_tokens_mask=True
        )

    texts = {split: raw[split].remove_columns("label") for split in ("train", "validation")}
    tokenized = {split: data.map(tokenize, batched=True, remove_columns=["text"]) for split, data in texts.items()}
    set_seed(args.seed)
    model = WaveForMaskedLM(config)
    trainer = Trainer(
        model=model,
        args=fixed_budget_arguments(
            args, output_dir / "mlm-trainer", args.mlm_steps, args.mlm_learning_rate, args.seed
        ),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability, seed=args.seed),
        processing_class=tokenizer,
    )
    train_metrics = trainer.train().metrics
    eval_metrics = trainer.evaluate()
    trainer.save_model(str(output_dir / "mlm"))
    return {
        "mlm_train_texts": len(tokenized["train"]),
        "mlm_steps": args.mlm_steps,
        "mlm_train_loss": train_metrics["train_loss"],
        "mlm_eval_loss": eval_metrics["eval_loss"],
        "mlm_train_seconds": train_metrics["train_runtime"],
    }


def finetune(args, tokenized, tokenizer, config, init: str, mlm_folder: str, seed: int, output_dir: Path):
    """Fine-tune a classifier from the pre-trained encoder or from random weights, with identical everything else."""
    set_seed(seed)
    info = {"missing_keys": []}
    if init == "pretrained":
        model, info = WaveForSequenceClassification.from_pretrained(
            mlm_folder, config=config, output_loading_info=True
        )
    else:
        model = WaveForSequenceClassification(config)
    trainer = Trainer(
        model=model,
        args=fixed_budget_arguments(
            args, output_dir / f"finetune-{init}", args.finetune_steps, args.finetune_learning_rate, seed
        ),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(config.num_labels),
    )
    train_metrics = trainer.train().metrics
    validation = trainer.evaluate()
    test = trainer.evaluate(tokenized["test"], metric_key_prefix="test")
    return {
        "finetune_steps": trainer.state.global_step,
        "train_loss": train_metrics["train_loss"],
        "validation_accuracy": validation["eval_accuracy"],
        "test_accuracy": test["test_accuracy"],
        "test_f1": test["test_f1"],
        "missing_keys": sorted(info["missing_keys"]),
    }


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    data_args, args, output_dir = start_experiment(PretrainArguments, argv, QUICK, QUICK_DATA)

    raw, label_names = load_raw_splits(data_args, seed=args.seed)
    tokenizer = load_tokenizer()
    config = WaveConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        intermediate_size=args.intermediate_size,
        wave_mode=args.wave_mode,
        max_position_embeddings=data_args.max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    results = run_settings(args)
    results["max_seq_length"] = data_args.max_seq_length
    mlm_folder = args.mlm_checkpoint
    if mlm_folder is None:
        mlm_folder = str(output_dir / "mlm")
        results.update(pretrain(args, raw, tokenizer, config, output_dir))

    tokenized = tokenize_splits(raw, tokenizer, data_args.max_seq_length)
    config = AutoConfig.from_pretrained(mlm_folder)  # the same config for both initialisations
    seeds = [int(seed) for seed in args.finetune_seeds.split(",")]
    for init in ("pretrained", "random"):
        runs = [finetune(args, tokenized, tokenizer, config, init, mlm_folder, seed, output_dir) for seed in seeds]
        for key in runs[0]:  # a value per seed, except what every seed shares
            shared = key in ("finetune_steps", "missing_keys")
            results[f"{init}_{key}"] = runs[0][key] if shared else [run[key] for run in runs]
        for key in ("validation_accuracy", "test_accuracy"):
            results[f"{init}_mean_{key}"] = statistics.mean(results[f"{init}_{key}"])
    results["test_samples"] = len(tokenized["test"])
    pairs = zip(results["pretrained_test_accuracy"], results["random_test_accuracy"])
    results["pretraining_gains"] = [pretrained - from_scratch for pretrained, from_scratch in pairs]
    results["pretraining_gain"] = statistics.mean(results["pretraining_gains"])

    write_results(output_dir, results)
    logger.info(
        f"IMDB test accuracy after {args.finetune_steps} fine-tuning steps, mean of {len(seeds)} seeds: pre-trained "
        f"{results['pretrained_mean_test_accuracy']:.4f}, random init {results['random_mean_test_accuracy']:.4f} "
        f"(gain {results['pretraining_gain']:+.4f}, per seed {[round(g, 4) for g in results['pretraining_gains']]})"
    )
    return results


if __name__ == "__main__":
    main()
