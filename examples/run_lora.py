#!/usr/bin/env python
"""LoRA fine-tuning of a Wave classifier with PEFT: train an adapter, save it, reload it on a fresh base, merge it.

    python examples/run_lora.py --model_name_or_path runs/pretrain-mlm/mlm --data_dir ../shared/data/imdb \
        --output_dir runs/lora [--quick]

The base is any saved Wave checkpoint: a masked LM from `examples/pretrain_mlm.py` (its encoder; the classifier
starts fresh) or a classifier. `LoraConfig(task_type="SEQ_CLS")` adds low-rank updates W + (alpha / r) B A to the
wave's two Linear layers, `projection` (the variants w, w' of Section 4) and `readout` (g of Eq. 8), and trains them
with the classifier (PEFT's `modules_to_save` for sequence classification); everything else stays frozen.

Then, in `output_dir`: `adapter/` (only the adapter and the classifier, with the tokenizer), reloaded with
`PeftModel.from_pretrained` on a freshly loaded base, and `merged/`, the adapter folded into the base weights
(`merge_and_unload`): a plain `WaveForSequenceClassification` that loads without PEFT. Both must give the trained
model's logits; `results.json` has the largest differences, the trainable share and validation / test accuracy.

`--quick` trains for a few steps on a few texts: it checks that everything runs (the tests use it); its accuracies
mean nothing.
"""

import logging
import sys
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForSequenceClassification, Trainer, set_seed

import modeling_wave  # noqa: F401  (registers the Wave classes with the Auto classes)
from wave_examples import option
from wave_examples.arguments import ExperimentArguments
from wave_examples.arguments import run_settings, start_experiment, write_results
from wave_examples.data import build_compute_metrics, load_raw_splits, load_tokenizer, tokenize_splits
from wave_examples.training import fixed_budget_arguments  # the same schedule as pretrain_mlm.py's fine-tuning

logger = logging.getLogger(__name__)


@dataclass
class LoraArguments(ExperimentArguments):
    """The base checkpoint, the adapter and its training budget."""

    model_name_or_path: str = option("runs/pretrain-mlm/mlm", "A saved Wave checkpoint (masked LM or classifier).")
    output_dir: str = option("runs/lora", "Where adapter/, merged/ and results.json go.")
    tokenizer_name: str | None = option(None, "Tokenizer (default: the checkpoint's).")
    target_modules: str = option("projection,readout", "Comma-separated Linear layers that get a LoRA update.")
    lora_r: int = option(8, "Rank r of the updates B A.")
    lora_alpha: int = option(16, "Scale alpha (the update is multiplied by alpha / r).")
    lora_dropout: float = option(0.1, "Dropout on the input of the updates.")
    max_steps: int = option(300, "Training steps.")
    learning_rate: float = option(1e-3, "Peak learning rate.")
    batch_size: int = option(32, "Texts per training step.")
    eval_batch_size: int = option(128, "Texts per evaluation batch.")


QUICK = dict(max_steps=4, batch_size=8, eval_batch_size=16, lora_r=4)
QUICK_DATA = dict(max_seq_length=64, max_train_samples=32, max_eval_samples=16, max_test_samples=16)


def load_base(args: LoraArguments, label_names: list[str]):
    """The base checkpoint as a classifier for these labels (a new classifier if it was trained on others)."""
    return AutoModelForSequenceClassification.from_pretrained(
        args.model_name_or_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        ignore_mismatched_sizes=True,  # a classifier for another number of classes is replaced
    )


def lora_config(args: LoraArguments, base) -> LoraConfig:
    return LoraConfig(
        task_type="SEQ_CLS",  # also trains and saves the classifier (`modules_to_save`)
        target_modules=args.target_modules.split(","),
        # a wide n-gram part (`wide_ngram_sizes`) is a per-class head too: train and save it with the classifier
        modules_to_save=["wide"] if getattr(base, "wide", None) is not None else None,
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
    )


@torch.no_grad()
def logits_of(model, batch: dict) -> torch.Tensor:
    model.eval()
    return model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float().cpu()


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    data_args, args, output_dir = start_experiment(LoraArguments, argv, QUICK, QUICK_DATA)

    raw, label_names = load_raw_splits(data_args, seed=args.seed)
    tokenizer = load_tokenizer(args.tokenizer_name or args.model_name_or_path)
    tokenized = tokenize_splits(raw, tokenizer, data_args.max_seq_length)

    set_seed(args.seed)
    base = load_base(args, label_names)
    model = get_peft_model(base, lora_config(args, base))
    trainable, total = model.get_nb_trainable_parameters()
    logger.info(f"LoRA trains {trainable:,} of {total:,} parameters ({100 * trainable / total:.2f}%).")
    trainer = Trainer(
        model=model,
        args=fixed_budget_arguments(args, output_dir / "trainer", args.max_steps, args.learning_rate, args.seed),
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(len(label_names)),
    )
    train_metrics = trainer.train().metrics
    validation = trainer.evaluate()
    test = trainer.evaluate(tokenized["test"], metric_key_prefix="test")

    adapter_dir, merged_dir = output_dir / "adapter", output_dir / "merged"
    model.save_pretrained(adapter_dir)  # the adapter and the classifier only, not the base weights
    tokenizer.save_pretrained(adapter_dir)
    probe = tokenizer(
        raw["test"]["text"][:8],
        truncation=True,
        max_length=data_args.max_seq_length,
        padding=True,
        return_tensors="pt",
    )
    probe = {key: probe[key] for key in ("input_ids", "attention_mask")}
    trained = logits_of(model, probe)

    reloaded = PeftModel.from_pretrained(load_base(args, label_names), adapter_dir)  # a fresh base
    reloaded_logits = logits_of(reloaded, probe)
    merged = reloaded.merge_and_unload()  # W + (alpha / r) B A, no LoRA layers left
    merged_logits = logits_of(merged, probe)
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)

    adapter_bytes = sum(f.stat().st_size for f in adapter_dir.iterdir() if f.name.startswith("adapter_model"))
    results = {
        **run_settings(args),
        "max_seq_length": data_args.max_seq_length,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "adapter_bytes": adapter_bytes,
        "train_loss": train_metrics["train_loss"],
        "train_seconds": train_metrics["train_runtime"],
        "validation_accuracy": validation["eval_accuracy"],
        "test_accuracy": test["test_accuracy"],
        "test_samples": len(tokenized["test"]),
        "reloaded_max_abs_difference": (reloaded_logits - trained).abs().max().item(),
        "merged_max_abs_difference": (merged_logits - trained).abs().max().item(),
    }
    write_results(output_dir, results)
    logger.info(
        f"LoRA ({trainable:,} trainable parameters, adapter {adapter_bytes / 2**20:.2f} MB): test accuracy "
        f"{results['test_accuracy']:.4f}; reloaded / merged logits within {results['reloaded_max_abs_difference']:.1e}"
        f" / {results['merged_max_abs_difference']:.1e} of the trained model's."
    )
    return results


if __name__ == "__main__":
    main()
