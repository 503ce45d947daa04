"""Data for distillation (`run_classification.py --teacher PATH`): augmented training texts and a teacher's logits
over them, computed once and kept in the `datasets` cache.

Augmentation follows Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple Neural Networks",
Section 3.2): every word of a copy is replaced by [MASK] with probability `mask_prob`, and with probability
`ngram_prob` the copy is cut to a random n-gram of 1 to 5 of its words. Augmented copies carry the label -100: the
student learns them from the teacher alone (`modeling_wave.distillation_loss`).
"""

import hashlib
import logging
import random
from pathlib import Path

import datasets
import torch
from datasets.fingerprint import Hasher
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modeling_wave.trainer_wave import TEACHER_LOGITS

logger = logging.getLogger(__name__)

MASK = "[MASK]"  # BERT uncased's mask token: the teacher's and the student's tokenizers both know it


def augment_text(text: str, rng: random.Random, mask_prob: float, ngram_prob: float) -> str:
    """One augmented copy of `text` (words split on whitespace)."""
    words = [MASK if rng.random() < mask_prob else word for word in text.split()]
    if words and rng.random() < ngram_prob:
        n = min(len(words), rng.randint(1, 5))
        start = rng.randrange(len(words) - n + 1)
        words = words[start : start + n]
    return " ".join(words)


def augment_training_set(train: datasets.Dataset, copies: int, seed: int, mask_prob: float, ngram_prob: float):
    """The training texts, each followed by `copies` augmented copies labelled -100 (a cached `map`)."""
    if copies == 0:
        return train

    def augment(batch, indices):
        texts, labels = [], []
        for index, text, label in zip(indices, batch["text"], batch["label"]):
            rng = random.Random(f"{seed}-{index}")  # the same copies whatever the batch
            texts += [text] + [augment_text(text, rng, mask_prob, ngram_prob) for _ in range(copies)]
            labels += [label] + [-100] * copies
        return {"text": texts, "label": labels}

    return train.map(augment, batched=True, with_indices=True, remove_columns=train.column_names,
                     desc=f"Augmenting ({copies} copies a text)")  # fmt: skip


def load_teacher(path: str, label_names: list[str]):
    """The teacher's model and tokenizer; refused when its classes are not the data's (number and names)."""
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    teacher_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if teacher_names != list(label_names):
        raise ValueError(
            f"The teacher {path} scores {len(teacher_names)} classes {teacher_names}, the data have "
            f"{len(label_names)} classes {list(label_names)}: train the teacher on this data (the same --class_names), "
            "or name the classes with --class_names as the teacher does."
        )
    return model, AutoTokenizer.from_pretrained(path)


def teacher_fingerprint(dataset: datasets.Dataset, path: str, max_length: int) -> str:
    """The cache key of a teacher's logits: the texts (the dataset's fingerprint), the teacher's weights, the length."""
    weights = sorted(Path(path).glob("*.safetensors")) or sorted(Path(path).glob("*.bin"))
    digest = hashlib.sha256()
    for file in weights:
        digest.update(file.read_bytes())
    return Hasher.hash([dataset._fingerprint, digest.hexdigest(), max_length, "teacher-logits-v1"])


def add_teacher_logits(dataset: datasets.Dataset, model, tokenizer, path: str, max_length: int = 128):
    """`dataset` with a `teacher_logits` column: the teacher's logits on every text, computed in batches once and
    reused from the `datasets` cache by any later run on the same texts with the same teacher."""

    @torch.no_grad()
    def score(batch, chunk: int = 128):
        ids = tokenizer(batch["text"], truncation=True, max_length=max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # chunks of similar length: little padding
        logits = [None] * len(ids)
        for start in range(0, len(order), chunk):
            rows = order[start : start + chunk]
            encoded = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            for i, row_logits in zip(rows, model(**encoded).logits.float().tolist()):
                logits[i] = row_logits
        return {TEACHER_LOGITS: logits}

    fingerprint = teacher_fingerprint(dataset, path, max_length)
    return dataset.map(score, batched=True, batch_size=2048, new_fingerprint=fingerprint,
                       desc=f"Teacher logits ({Path(path).name})")  # fmt: skip
