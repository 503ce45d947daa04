"""Distillation (`run_classification.py --teacher PATH`): a Wave student of a transformer teacher. A tiny BERT teacher
is made here; the student is the main preset with small tables.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/examples/test_distillation.py -q`
"""

import json
import random
import textwrap
from pathlib import Path

import datasets
import pytest
import torch
from example_scripts import load_example
from fresh_python import run_outside_the_checkout
from test_run_classification import write_sentiment_csv
from transformers import BertConfig, BertForSequenceClassification

from wave_examples.data import load_tokenizer
from wave_examples.distillation import MASK, add_teacher_logits, augment_text, augment_training_set, load_teacher

LABELS = ["negative", "positive"]


def make_teacher(folder: Path, labels=LABELS) -> Path:
    """A tiny BERT classifier (2 layers, width 32) on BERT's uncased vocabulary, with its tokenizer; an untrained one,
    whose class biases (+2, -2, ...) make its logits far from an untrained student's."""
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})  # fmt: skip
    teacher = BertForSequenceClassification(config)
    with torch.no_grad():
        teacher.classifier.bias.copy_(torch.linspace(2, -2, len(labels)))
    teacher.save_pretrained(folder)
    load_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distillation")
    write_sentiment_csv(folder / "train.csv", rows=160, seed=0)
    write_sentiment_csv(folder / "test.csv", rows=40, seed=1)
    make_teacher(folder / "tiny-teacher")
    return folder


def student_argv(work: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "configuration/train/wave-recipe.json", "--data_dir", str(work), "--class_names", ",".join(LABELS),
        "--output_dir", str(output_dir), "--teacher", str(work / "tiny-teacher"), "--augmented_copies", "2",
        "--min_updates", "6", "--max_epochs", "2", "--evaluations", "2", "--disable_tqdm", "true",
        "--config_overrides", "ngram_buckets=1000,wide_buckets=4096", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def student(work):
    output_dir = work / "student"
    results = load_example("run_classification").main(student_argv(work, output_dir))
    return output_dir, results


def test_a_distilled_student_is_an_ordinary_wave_checkpoint(student):
    output_dir, results = student
    assert 0 <= results["test_accuracy"] <= 1
    assert json.loads((output_dir / "all_results.json").read_text())["test_accuracy"] == results["test_accuracy"]
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "wave" and config["id2label"] == {"0": "negative", "1": "positive"}
    assert not any("teacher" in key or "distill" in key for key in config)
    args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert args.distillation_alpha == 0.5 and args.distillation_loss == "mse"


def test_the_student_loads_through_remote_code_and_classifies(student, tmp_path_factory):
    output_dir, _ = student
    script = textwrap.dedent(
        """
        import sys
        sys.modules["modeling_wave"] = None  # the code comes from the checkpoint
        from pathlib import Path
        from transformers import pipeline
        classify = pipeline("text-classification", model=sys.argv[1], trust_remote_code=True)
        result = classify(["a great and wonderful film", "a dull and awful film"])
        assert all(r["label"] in ("negative", "positive") for r in result), result
        Path("done").write_text(type(classify.model).__module__)
        """
    )
    cwd, _ = run_outside_the_checkout(script, output_dir, tmp_path_factory)
    assert (Path(cwd) / "done").read_text().startswith("transformers_modules")


def test_the_student_moves_towards_the_teacher(work, tmp_path):
    """With every weight on the teacher (alpha 1) the student's logits move towards the teacher's."""
    from wave_examples.training import parse_classification_arguments, prepare_classification

    arguments = parse_classification_arguments(student_argv(work, tmp_path / "s", "--distillation_alpha", "1"))
    trainer, tokenized, _ = prepare_classification(*arguments)
    train = tokenized["train"]
    assert "teacher_logits" in train.column_names and len(train) == 3 * 128  # 80% of 160, with 2 copies each
    assert train["labels"].count(-100) == 2 * 128
    batch = trainer.data_collator([train[i] for i in range(8)])
    assert batch["teacher_logits"].shape == (8, 2)

    def teacher_distance():
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
        with torch.no_grad():
            return torch.nn.functional.mse_loss(trainer.model.eval()(**inputs).logits, batch["teacher_logits"]).item()

    before = teacher_distance()
    trainer.train()
    assert teacher_distance() < 0.75 * before  # 6 updates


def test_the_teacher_logits_are_computed_once_and_then_read_from_the_cache(work, tmp_path):
    train = datasets.load_dataset("csv", data_files=str(work / "train.csv"), cache_dir=str(tmp_path))["train"]
    teacher, tokenizer = load_teacher(str(work / "tiny-teacher"), LABELS)
    calls = []
    teacher.register_forward_hook(lambda module, args, output: calls.append(1))
    first = add_teacher_logits(train, teacher, tokenizer, str(work / "tiny-teacher"))
    computed = len(calls)
    second = add_teacher_logits(train, teacher, tokenizer, str(work / "tiny-teacher"))
    assert computed > 0 and len(calls) == computed  # the second time, no teacher call at all
    assert second["teacher_logits"] == first["teacher_logits"] and len(first) == 160
    text = tokenizer(train["text"][:1], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(first["teacher_logits"][0]), teacher(**text).logits[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("labels", [["negative", "neutral", "positive"], ["bad", "good"]])
def test_a_teacher_whose_classes_differ_from_the_data_is_refused_naming_both(work, tmp_path, labels):
    make_teacher(tmp_path / "teacher", labels)
    with pytest.raises(ValueError, match=f"scores {len(labels)} classes .*data have 2 classes .*negative"):
        load_example("run_classification").main(
            student_argv(work, tmp_path / "out") + ["--teacher", str(tmp_path / "teacher")]
        )


def test_copies_without_a_teacher_are_refused_by_name(work, tmp_path):
    argv = student_argv(work, tmp_path / "out")
    argv = argv[: argv.index("--teacher")] + argv[argv.index("--teacher") + 2 :]
    with pytest.raises(ValueError, match="--teacher PATH"):
        load_example("run_classification").main(argv)


def test_augmentation_masks_words_and_samples_ngrams():
    text = " ".join(f"w{i}" for i in range(40))
    masked = augment_text(text, random.Random(0), mask_prob=0.5, ngram_prob=0.0).split()
    assert len(masked) == 40 and 8 < masked.count(MASK) < 32
    assert all(word in (MASK, f"w{i}") for i, word in enumerate(masked))
    ngrams = [augment_text(text, random.Random(seed), mask_prob=0.0, ngram_prob=1.0) for seed in range(20)]
    assert all(1 <= len(g.split()) <= 5 and g in text for g in ngrams)
    assert augment_text(text, random.Random(3), 0.1, 0.25) == augment_text(text, random.Random(3), 0.1, 0.25)


def test_augmented_copies_follow_their_text_and_carry_no_label():
    train = datasets.Dataset.from_dict({"text": ["a b c d", "e f g h"], "label": [0, 1]})
    augmented = augment_training_set(train, copies=3, seed=0, mask_prob=0.5, ngram_prob=0.5)
    assert augmented["label"] == [0, -100, -100, -100, 1, -100, -100, -100]
    assert augmented["text"][0] == "a b c d" and augmented["text"][4] == "e f g h"


def test_the_accelerate_loop_refuses_a_teacher_by_name(work, tmp_path):
    with pytest.raises(ValueError, match="--teacher"):
        load_example("train_accelerate").main(student_argv(work, tmp_path / "out"))


def test_the_distillation_suite_quick_mode_runs_each_student_after_its_teacher_and_times_both(tmp_path):
    """`run_suite.py` points a student (`"teacher": "teacher"`) at the teacher's run on the same set and seed; the
    table has their parameters and, from export_onnx.py, their sequences per second by backend."""
    rows = load_example("run_suite").main(["configuration/suites/suite-distillation.json", "--quick", "--sets", "trec",
                                           "--models", "student,teacher", "--output_dir", str(tmp_path)])  # fmt: skip
    assert {r["model"] for r in rows} == {"student", "teacher"}
    runs = json.loads((tmp_path / "suite.json").read_text())["runs"]
    assert [r["model"] for r in runs] == ["teacher", "student"]
    assert f"--teacher {tmp_path / 'trec-teacher-seed42'}" in runs[1]["command"]
    assert (tmp_path / "trec-teacher-seed42" / "all_results.json").exists()
    parameters = {r["model"]: r["parameters"] for r in rows}
    assert parameters["teacher"] > parameters["student"] > 0
    # The spec's `inference` entry: export_onnx.py on both runs, one after the other.
    measured = json.loads((tmp_path / "suite.json").read_text())["inference"]
    assert list(measured) == ["teacher", "student"]
    for timing in measured.values():
        assert set(timing["sequences_per_second"]) == {"PyTorch float32", "ONNX Runtime float32",
                                                       "ONNX Runtime int8 dynamic"}  # fmt: skip
        assert all(rate > 0 for rate in timing["sequences_per_second"].values())
    table = (tmp_path / "suite.md").read_text()
    assert "| teacher |" in table.split("Inference on trec")[1] and "x teacher's fastest" in table
