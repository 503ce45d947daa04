"""Tests of the recipe that runs unchanged on any set: the schedule derived from the data, token embeddings started
from MiniLM, one preset through Trainer and the Accelerate loop, classes taken from the data, and the suite example
(`--quick`). The sparse tables, their optimizer and clipping: tests/model/test_trainer_wave.py.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/examples/test_recipe.py -q`
"""

import json

import pytest
import torch
from conftest import REPO_ROOT, shared_data_dir
from example_scripts import load_example
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from modeling_wave import LazyAdamW, WaveConfig, WaveForSequenceClassification, init_word_embeddings
from modeling_wave.optimization_wave import covering_length
from wave_examples.arguments import DataArguments, ScheduleArguments
from wave_examples.data import load_tokenizer
from wave_examples.hub import resolve_pretrained_path
from wave_examples.schedule import apply_schedule, derive_schedule

MINILM = resolve_pretrained_path("sentence-transformers/all-MiniLM-L6-v2")
run_suite = load_example("run_suite")


def training_arguments(tmp_path, **kwargs) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=64, use_cpu=True, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# The schedule


def test_a_small_set_gets_the_minimum_number_of_updates(tmp_path):
    derived = derive_schedule([12] * 4361, ScheduleArguments(min_updates=1500), training_arguments(tmp_path))
    assert derived["max_steps"] == 1500  # 21.7 epochs of 69 updates
    assert derived["eval_steps"] == -(-derived["max_steps"] // 6)


def test_a_large_set_of_long_texts_gets_one_epoch(tmp_path):
    args = ScheduleArguments(min_updates=1500, max_train_tokens=5_000_000)
    derived = derive_schedule([300] * 20_000, args, training_arguments(tmp_path))
    assert derived["max_steps"] == 313  # ceil(20,000 / 64): the token budget allows less than 1 epoch, 1 is the floor


def test_the_token_budget_caps_the_epochs_of_long_texts(tmp_path):
    args = ScheduleArguments(min_updates=10_000, max_epochs=30, max_train_tokens=4_000_000)
    derived = derive_schedule([200] * 4000, args, training_arguments(tmp_path))  # 800,000 tokens an epoch
    assert derived["epochs"] == pytest.approx(5.0, abs=0.02)


def test_max_epochs_caps_a_tiny_set(tmp_path):
    derived = derive_schedule([10] * 64, ScheduleArguments(min_updates=1500, max_epochs=30), training_arguments(tmp_path))
    assert derived["max_steps"] == 30


def test_evaluations_are_as_many_as_the_eval_share_of_the_training_tokens_pays_for(tmp_path):
    args = ScheduleArguments(min_updates=500, evaluations=6, eval_share=0.25)
    short = derive_schedule([12] * 4361, args, training_arguments(tmp_path), eval_tokens=12 * 1091)
    assert short["eval_steps"] == -(-short["max_steps"] // 6)  # 0.25 x 6.0M / 13k tokens: far more than 6
    four = derive_schedule([40] * 8000, args, training_arguments(tmp_path), eval_tokens=40 * 2000)
    assert four["max_steps"] == 500 and four["eval_steps"] == 125  # 0.25 x 4 epochs x 320k tokens / 80k = 4
    long = derive_schedule([300] * 20_000, args, training_arguments(tmp_path), eval_tokens=300 * 5000)
    assert long["eval_steps"] is None  # 0.25 x 6M / 1.5M = 1: no evaluation during training


def test_a_schedule_without_evaluations_keeps_the_last_model_and_a_checkpoint_halfway(tmp_path):
    data_args = DataArguments()
    training_args = training_arguments(tmp_path, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True)
    apply_schedule([300] * 20_000, ScheduleArguments(schedule="data"), data_args, training_args, 3200, [300] * 5000)
    assert training_args.eval_strategy == IntervalStrategy.NO and not training_args.load_best_model_at_end
    assert training_args.save_steps == 157 and training_args.max_steps == 313


def test_covering_length_keeps_the_share_of_texts_whole():
    lengths = list(range(1, 1001))
    assert covering_length(lengths, 0.99, cap=3200) == 992  # 990 rounded up to a multiple of 8
    assert covering_length(lengths, 1.0, cap=512) == 512


def test_apply_schedule_sets_what_was_left_at_its_default(tmp_path):
    data_args = DataArguments()
    training_args = training_arguments(tmp_path, eval_strategy="epoch", save_strategy="epoch")
    length = apply_schedule([20] * 1000, ScheduleArguments(schedule="data"), data_args, training_args, cap=3200)
    assert length == data_args.max_seq_length == 20  # no longer than the longest text
    assert training_args.max_steps == 30 * 16  # max_epochs: 1,000 texts are 16 updates an epoch
    assert training_args.eval_strategy == training_args.save_strategy == IntervalStrategy.STEPS
    assert training_args.eval_steps == training_args.save_steps == -(-training_args.max_steps // 6)


def test_apply_schedule_keeps_explicit_options(tmp_path):
    data_args = DataArguments(max_seq_length=100)
    training_args = training_arguments(tmp_path, num_train_epochs=2, eval_strategy="steps", eval_steps=7)
    length = apply_schedule([20] * 1000, ScheduleArguments(schedule="data"), data_args, training_args, cap=3200)
    assert length == 100
    assert training_args.max_steps == -1 and training_args.num_train_epochs == 2
    assert training_args.eval_steps == 7


def test_the_fixed_schedule_changes_nothing(tmp_path):
    data_args, training_args = DataArguments(), training_arguments(tmp_path)
    assert apply_schedule([20] * 1000, ScheduleArguments(), data_args, training_args, cap=3200) == 256
    assert training_args.max_steps == -1 and training_args.eval_steps is None


@pytest.mark.parametrize("field, value", [("schedule", "auto"), ("length_coverage", 0.0), ("min_updates", 0)])
def test_bad_schedule_options_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        ScheduleArguments(**{field: value})


# ----------------------------------------------------------------------------------------------------------------
# Token embeddings from MiniLM


@pytest.fixture(scope="module")
def minilm_table() -> torch.Tensor:
    from transformers import AutoModel

    return AutoModel.from_pretrained(MINILM).get_input_embeddings().weight.detach()


def small_classifier(hidden_size: int, vocab_size: int = 30522) -> WaveForSequenceClassification:
    config = WaveConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=0, num_labels=2)
    return WaveForSequenceClassification(config)


def test_a_table_as_wide_as_the_model_is_copied(minilm_table):
    model = small_classifier(hidden_size=384)
    init_word_embeddings(model, MINILM, load_tokenizer())
    assert torch.equal(model.get_input_embeddings().weight, minilm_table)


def test_a_wider_table_is_projected_onto_its_principal_components(minilm_table):
    model = small_classifier(hidden_size=32)
    init_word_embeddings(model, MINILM, load_tokenizer())
    table = model.get_input_embeddings().weight.detach()
    assert table.shape == (30522, 32)
    covariance = torch.cov(table.T)
    variances = covariance.diagonal()
    assert torch.all(variances[:-1] >= variances[1:])  # components in order of the variance they carry
    off_diagonal = covariance - torch.diag(variances)
    assert off_diagonal.abs().max() < 1e-3 * variances.max()  # uncorrelated components
    total = torch.cov(minilm_table.T).diagonal().sum()
    assert variances.sum() < total and variances.sum() > 0.2 * total


def test_a_vocabulary_mismatch_is_refused_by_name(tmp_path):
    tokenizer = load_tokenizer()
    tokenizer.add_tokens(["zzwavetoken"])  # one token more: the rows would no longer mean the same tokens
    with pytest.raises(ValueError, match="word_embeddings_from.*vocabulary"):
        init_word_embeddings(small_classifier(hidden_size=32), MINILM, tokenizer)


def test_a_narrower_table_is_refused():
    with pytest.raises(ValueError, match="hidden_size <= 384"):
        init_word_embeddings(small_classifier(hidden_size=512), MINILM, load_tokenizer())


# ----------------------------------------------------------------------------------------------------------------
# The recipe and the suite, end to end on TREC (6 classes)


def test_the_recipe_takes_its_classes_from_the_data(tmp_path):
    run_classification = load_example("run_classification")
    argv = [
        "configuration/train/wave-recipe.json", "--data_dir", str(shared_data_dir("trec")), "--output_dir", str(tmp_path),
        "--max_train_samples", "64", "--max_eval_samples", "32", "--max_test_samples", "32", "--min_updates", "2",
        "--max_epochs", "1", "--evaluations", "1", "--disable_tqdm", "true",
        "--config_overrides", "ngram_buckets=1000,wide_buckets=4096",
    ]
    results = run_classification.main(argv)
    config = json.loads((tmp_path / "config.json").read_text())
    assert len(config["id2label"]) == 6 and sorted(config["label2id"].values()) == list(range(6))
    assert 0 <= results["test_accuracy"] <= 1


def test_class_names_that_do_not_fit_the_data_name_the_option(tmp_path):
    from wave_examples.data import load_raw_splits

    args = DataArguments(data_dir=str(shared_data_dir("trec")), class_names="negative,positive")
    with pytest.raises(ValueError, match="--class_names gives 2 names"):
        load_raw_splits(args, seed=42)


def test_the_suite_quick_mode_end_to_end(tmp_path):
    rows = run_suite.main(["configuration/suites/suite-five-sets.json", "--quick", "--sets", "trec,subj",
                           "--output_dir", str(tmp_path)])
    assert {(r["set"], r["model"]) for r in rows} == {
        (s, m) for s in ("trec", "subj") for m in ("wave", "best-classic")
    }
    saved = json.loads((tmp_path / "suite.json").read_text())
    assert len(saved["runs"]) == 4 and all(0 <= r["metrics"]["test_accuracy"] <= 1 for r in saved["runs"])
    table = (tmp_path / "suite.md").read_text()
    assert table.count("\n| trec | wave |") == 1 and table.count("\n| trec | best-classic") == 1
    assert "end-to-end s" in table and "| set | wave minus best-classic" in table
    assert all(r["end_to_end_seconds"] > r["train_seconds"] > 0 for r in rows)


def test_the_suite_refuses_an_unknown_set():
    with pytest.raises(ValueError, match="--sets names \\['sst'\\]"):
        run_suite.main(["configuration/suites/suite-five-sets.json", "--sets", "sst"])


def test_the_hash_spread_example_shows_the_legacy_hash_crowding(tmp_path):
    spread = load_example("ngram_hash_spread")
    rows = spread.main(["--data_dir", str(shared_data_dir("imdb")), "--texts", "300", "--buckets", "200000",
                        "--output_dir", str(tmp_path)])
    filled = {r["hash"]: r["buckets_filled"] for r in rows}
    assert abs(filled["universal"] - filled["random (expected)"]) < 0.03 * filled["random (expected)"]
    assert filled["legacy"] < 0.8 * filled["random (expected)"]
    assert (tmp_path / "hash_spread.md").read_text().count("| legacy |") == 1


# ----------------------------------------------------------------------------------------------------------------
# One preset, one model: Trainer and the Accelerate loop


def tiny_recipe_argv(output_dir, *extra) -> list[str]:
    """The main job's preset on 200 TREC questions, with small tables."""
    return [
        "configuration/train/wave-recipe.json", "--data_dir", str(shared_data_dir("trec")), "--output_dir", str(output_dir),
        "--max_train_samples", "200", "--max_eval_samples", "40", "--max_test_samples", "40", "--disable_tqdm", "true",
        "--config_overrides", "ngram_buckets=1000,wide_buckets=4096", *extra,
    ]  # fmt: skip


def optimizer_layout(model, optimizer) -> dict:
    """What an optimizer does to a model: per group its learning rate, weight decay, parameter names and which
    parameters get a sparse (lazy) update; and the frozen parameters."""
    names = {id(p): n for n, p in model.named_parameters()}
    inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps the optimizer
    sparse = {id(p) for group in getattr(inner, "sparse", inner).param_groups for p in group["params"]}
    sparse = sparse if isinstance(inner, LazyAdamW) else set()
    groups = sorted(
        (group["lr"], group.get("weight_decay", 0.0), tuple(sorted(names[id(p)] for p in group["params"])),
         tuple(sorted(names[id(p)] for p in group["params"] if id(p) in sparse)))
        for group in inner.param_groups
    )  # fmt: skip
    return {"groups": groups, "frozen": sorted(n for n, p in model.named_parameters() if not p.requires_grad),
            "optimizer": type(inner).__name__}


def through_both_loops(tmp_path, monkeypatch, *extra):
    """The optimizer layout and derived schedule of the same arguments in `run_classification.py`'s Trainer and in
    `train_accelerate.py`'s loop (its `train` replaced by a probe: nothing is trained)."""
    from wave_examples.training import parse_classification_arguments, prepare_classification

    model_args, data_args, training_args, schedule_args = parse_classification_arguments(
        tiny_recipe_argv(tmp_path / "trainer", *extra)
    )
    trainer, _, _ = prepare_classification(model_args, data_args, training_args, schedule_args)
    trainer_side = optimizer_layout(trainer.model, trainer.create_optimizer())
    trainer_side["schedule"] = (training_args.max_steps, training_args.eval_steps, data_args.max_seq_length)

    train_accelerate = load_example("train_accelerate")
    seen = {}

    def probe(accelerator, loop_args, model, optimizer, *rest):
        seen.update(optimizer_layout(accelerator.unwrap_model(model), optimizer))
        seen["schedule"] = (loop_args.max_steps, loop_args.eval_steps, seen_length["value"])
        return {}

    seen_length = {}
    prepare = train_accelerate.prepare_model_and_data

    def prepare_and_note_length(model_args, data_args, *args):
        prepared = prepare(model_args, data_args, *args)
        seen_length["value"] = data_args.max_seq_length
        return prepared

    monkeypatch.setattr(train_accelerate, "train", probe)
    monkeypatch.setattr(train_accelerate, "prepare_model_and_data", prepare_and_note_length)
    train_accelerate.main(tiny_recipe_argv(tmp_path / "accelerate", *extra))
    return trainer_side, seen


def test_the_main_preset_trains_the_same_model_through_trainer_and_accelerate(tmp_path, monkeypatch):
    trainer_side, accelerate_side = through_both_loops(tmp_path, monkeypatch)
    assert trainer_side == accelerate_side
    rates = {lr for lr, *_ in trainer_side["groups"]}
    assert rates == {1e-3, 0.03} and trainer_side["optimizer"] == "LazyAdamW"  # the wide part has its own rate
    assert any(sparse for *_, sparse in trainer_side["groups"])


def test_frozen_tables_and_embedding_rates_are_the_same_in_both_loops(tmp_path, monkeypatch):
    extra = ("--freeze_word_embeddings", "true", "--embedding_learning_rate", "0.01")
    trainer_side, accelerate_side = through_both_loops(tmp_path, monkeypatch, *extra)
    assert trainer_side == accelerate_side
    assert trainer_side["frozen"] == ["wave.embeddings.word_embeddings.weight"]
    assert {lr for lr, *_ in trainer_side["groups"]} == {1e-3, 0.03, 0.01}


def test_the_accelerate_loop_trains_the_main_preset(tmp_path):
    """Sparse tables (LazyAdamW, sparse-aware clipping), group_by_length and the derived schedule, end to end."""
    train_accelerate = load_example("train_accelerate")
    results = train_accelerate.main(tiny_recipe_argv(tmp_path, "--max_steps", "6", "--evaluations", "2"))
    assert results["train_steps"] == 6 and 0 <= results["test_accuracy"] <= 1
    assert (tmp_path / "model.safetensors").exists()


def test_the_accelerate_loop_refuses_what_only_trainer_does_by_name(tmp_path):
    train_accelerate = load_example("train_accelerate")
    with pytest.raises(ValueError, match="--torch_compile"):
        train_accelerate.main(tiny_recipe_argv(tmp_path, "--torch_compile", "true"))


def test_truncating_tokenized_splits_keeps_the_final_separator():
    import datasets

    from wave_examples.data import truncate_splits

    rows = {"input_ids": [[101, 5, 6, 7, 8, 102], [101, 5, 102]], "attention_mask": [[1] * 6, [1] * 3], "labels": [0, 1]}
    tokenized = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows)})
    cut = truncate_splits(tokenized, 4)["train"]
    assert cut["input_ids"] == [[101, 5, 6, 102], [101, 5, 102]]
    assert cut["attention_mask"] == [[1] * 4, [1] * 3] and cut["labels"] == [0, 1]


# ----------------------------------------------------------------------------------------------------------------
# Where the time goes: the profiler and the time-to-accuracy benchmark


def test_the_time_to_accuracy_benchmark_tabulates_and_plots_both_models(tmp_path):
    time_to_accuracy = load_example("time_to_accuracy")
    spec = json.loads((REPO_ROOT / "configuration" / "benchmark" / "time-to-accuracy.json").read_text())
    spec["data_dir"] = str(shared_data_dir("imdb"))
    spec["wave"]["budgets"] = spec["wave"]["budgets"][:2]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    rows = time_to_accuracy.main([str(tmp_path / "spec.json"), "--quick", "--output_dir", str(tmp_path / "out")])
    assert [r["model"] for r in rows] == ["wave", "wave", "linear"]
    assert all(0 <= r["test_accuracy"] <= 1 and r["end_to_end_seconds"] > r["train_seconds"] > 0 for r in rows)
    table = (tmp_path / "out" / "time_to_accuracy.md").read_text()
    assert table.count("| wave |") == 2 and table.count("| linear |") == 1
    assert (tmp_path / "out" / "time_to_accuracy.png").stat().st_size > 10_000


def test_the_profiler_accounts_for_the_training_loop(tmp_path):
    profile_training = load_example("profile_training")
    report = profile_training.main(tiny_recipe_argv(tmp_path / "run", "--max_steps", "4", "--part_batches", "3",
                                                    "--profile_dir", str(tmp_path / "profile")))
    stages = {row["stage"]: row for row in report["stages"]}
    training = stages["training (all of trainer.train)"]["seconds"]
    parts = sum(row["seconds"] for name, row in stages.items() if name.startswith("train: ") and "for evaluations" not in name)
    assert parts == pytest.approx(training, rel=1e-6)  # the parts, "other" included, add up to the whole
    assert stages["train: forward"]["calls"] == stages["train: optimizer step"]["calls"] == 4
    assert [row["part"] for row in report["parts"]] == ["whole model", "wide part", "n-gram embeddings", "wave layers"]
    assert (tmp_path / "profile" / "profile.md").read_text().count("| train: ") >= 5
