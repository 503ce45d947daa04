"""`examples/run_classification.py` end to end: it learns IMDB, its output folder is a usable checkpoint, a killed
run resumes to the very weights of an uninterrupted one, and its presets parse as documented.

The trainings run in subprocesses (as a user runs the script), so that the Trainer, logging and seeds of one run
cannot leak into another or into this test session.
"""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, pipeline

import modeling_wave  # noqa: F401  (registers the Wave classes with the Auto classes)
from conftest import REPO_ROOT, shared_data_dir
from modeling_wave import WaveConfig, WaveForSequenceClassification
from wave_examples.arguments import ModelArguments
from wave_examples.training import build_model, parse_classification_arguments

SCRIPT = REPO_ROOT / "examples" / "run_classification.py"

# A killable `run_classification.py`: the Trainer gets a callback that SIGKILLs its own process right after the
# checkpoint of step $WAVE_KILL_AT_STEP is written (`on_save` runs once the folder is complete), and one that
# appends every optimizer step it runs to $WAVE_STEP_LOG, so a test sees which steps a resumed run really ran.
KILLABLE_DRIVER = textwrap.dedent(
    """
    import os
    import runpy
    import signal

    from transformers import TrainerCallback

    from wave_examples import training

    KILL_AT_STEP = int(os.environ.get("WAVE_KILL_AT_STEP", "-1"))


    class KillAfterSave(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            with open(os.environ["WAVE_STEP_LOG"], "a") as log:
                log.write(f"{state.global_step}\\n")

        def on_save(self, args, state, control, **kwargs):
            if state.global_step == KILL_AT_STEP:
                os.kill(os.getpid(), signal.SIGKILL)


    class KillableTrainer(training.ClassificationTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(KillAfterSave())


    training.ClassificationTrainer = KillableTrainer  # the script imports it from here
    runpy.run_path(os.environ["WAVE_SCRIPT"], run_name="__main__")
    """
)


def write_wave_config(path, **fields):
    """A tiny Wave Network config (BERT uncased vocabulary), as `--config_name` takes it."""
    config = {
        "model_type": "wave",
        "vocab_size": 30522,
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "intermediate_size": 0,
        "hidden_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "wave_mode": "modulation",
        "pad_token_id": 0,
        **fields,
    }
    path.write_text(json.dumps(config))
    return path


def run_script(argv, cwd, script=SCRIPT, timeout=1800, **env_extra):
    """Run a training script in a fresh Python; fail with the end of its output if it fails."""
    env = {k: v for k, v in os.environ.items() if k != "WAVE_DATA_DIR"}  # no data folder from the caller's shell
    env.update({"WAVE_SCRIPT": str(SCRIPT), **{k: str(v) for k, v in env_extra.items()}})
    command = [sys.executable, str(script), *map(str, argv)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def output_tail(completed, chars=4000) -> str:
    return f"exit {completed.returncode}\n--- output (end) ---\n{(completed.stdout + completed.stderr)[-chars:]}"


def imdb_dir():
    """The IMDB copy beside the repository (CI must have it: there a missing copy fails instead of skipping)."""
    return shared_data_dir("imdb")


# ---------------------------------------------------------------------------------------------------------------
# End to end on IMDB
# ---------------------------------------------------------------------------------------------------------------

IMDB_TEST_SAMPLES = 2000


@pytest.fixture(scope="module")
def imdb_run(tmp_path_factory):
    """One small IMDB training: 4,000 reviews, 128 tokens, 2 epochs of a 64-wide Wave Network (~30 s on 2 cores)."""
    data_dir = imdb_dir()
    work = tmp_path_factory.mktemp("imdb")
    output_dir = work / "output"
    argv = [
        "--config_name", write_wave_config(work / "tiny-wave.json"),
        "--data_dir", data_dir,
        "--class_names", "negative,positive",
        "--max_train_samples", 4000,
        "--max_eval_samples", 500,
        "--max_test_samples", IMDB_TEST_SAMPLES,
        "--max_seq_length", 128,
        "--output_dir", output_dir,
        "--do_train", "true",
        "--num_train_epochs", 2,
        "--learning_rate", 1e-3,
        "--per_device_train_batch_size", 32,
        "--per_device_eval_batch_size", 128,
        "--eval_strategy", "epoch",
        "--save_strategy", "no",
        "--logging_steps", 50,
        "--seed", 42,
        "--use_cpu", "true",
        "--report_to", "none",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    completed = run_script(argv, cwd=work)
    assert completed.returncode == 0, output_tail(completed)
    return output_dir


def test_imdb_accuracy_is_well_above_chance(imdb_run):
    results = json.loads((imdb_run / "all_results.json").read_text())
    assert results["test_samples"] == IMDB_TEST_SAMPLES
    assert results["test_accuracy"] >= 0.70, results
    assert results["eval_accuracy"] >= 0.70, results
    assert results["test_f1"] >= 0.65, results  # macro F1: not one class predicted for everything


def test_output_folder_is_a_checkpoint_with_label_names(imdb_run):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "modeling_wave.py", "README.md"):
        assert (imdb_run / name).is_file(), name
    model = AutoModelForSequenceClassification.from_pretrained(imdb_run)
    assert type(model).__name__ == "WaveForSequenceClassification"
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    assert model.config.hidden_size == 64
    card = (imdb_run / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card
    assert "## Test results" in card
    # Trained from a config, not fine-tuned from a Hub model: no base_model (the Hub refuses a path there).
    assert "base_model" not in card and "trained from scratch" in card


def test_output_folder_works_in_a_pipeline(imdb_run):
    classify = pipeline("text-classification", model=str(imdb_run))
    texts = [
        "One of the best films I have ever seen: a wonderful, moving story with brilliant acting. Loved it.",
        "Awful. A boring, stupid waste of time with terrible acting; the worst movie of the year.",
    ]
    results = classify(texts)
    assert [r["label"] for r in results] == ["positive", "negative"]
    assert all(0.5 < r["score"] <= 1 for r in results)
    # Full-length reviews (up to ~1,100 tokens) need the usual truncation to the model's 512 positions.
    results = classify(["A fine film. " * 400], truncation=True)
    assert results[0]["label"] in ("negative", "positive")


# ---------------------------------------------------------------------------------------------------------------
# Resuming a killed run
# ---------------------------------------------------------------------------------------------------------------

POSITIVE = ["great", "wonderful", "superb", "moving", "brilliant", "charming", "funny", "beautiful"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "weak", "stupid", "tedious", "ugly"]
FILLER = ["the", "film", "plot", "actors", "story", "scene", "was", "and", "a", "movie", "music", "ending"]


def write_sentiment_csv(path, rows: int, seed: int):
    """Short synthetic reviews whose label is told by a few sentiment words among filler words."""
    rng = random.Random(seed)
    lines = ["text,label"]
    for i in range(rows):
        label = i % 2
        words = rng.choices(FILLER, k=rng.randint(6, 14)) + rng.choices(POSITIVE if label else NEGATIVE, k=3)
        rng.shuffle(words)
        lines.append(f"{' '.join(words)},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


# The optimizers a run can checkpoint: Trainer's AdamW, and the recipe's (configuration/train/wave-recipe.json) sparse
# tables, whose AdamW becomes LazyAdamW (SparseAdam for the tables).
SPARSE_TABLES = {
    "config_overrides": json.dumps({"ngram_sizes": [2], "ngram_buckets": 500, "wide_ngram_sizes": [1, 2],
                                    "wide_buckets": 1000}),
    "sparse_embeddings": "true",
    "wide_learning_rate": 0.03,
}


@pytest.fixture(scope="module", params=["dense-adamw", "sparse-tables-lazy-adamw"])
def resume_setup(tmp_path_factory, request):
    work = tmp_path_factory.mktemp("resume")
    (work / "driver.py").write_text(KILLABLE_DRIVER)
    common = [
        "--config_name", write_wave_config(work / "tiny-wave.json", hidden_size=16, max_position_embeddings=64),
        "--train_file", write_sentiment_csv(work / "train.csv", rows=320, seed=0),
        "--test_file", write_sentiment_csv(work / "test.csv", rows=64, seed=1),
        "--max_seq_length", 32,
        "--do_train", "true",
        "--num_train_epochs", 2,  # 256 training texts (80%), batches of 16: 16 steps per epoch, 32 in all
        "--learning_rate", 1e-2,
        "--per_device_train_batch_size", 16,
        "--eval_strategy", "steps",
        "--eval_steps", 8,
        "--save_strategy", "steps",
        "--save_steps", 8,
        "--load_best_model_at_end", "false",
        "--logging_steps", 4,
        "--seed", 7,
        "--use_cpu", "true",
        "--report_to", "none",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    if request.param == "sparse-tables-lazy-adamw":
        common += [item for key, value in SPARSE_TABLES.items() for item in (f"--{key}", value)]
    env = {"OMP_NUM_THREADS": "1"}  # the same float summation order in every run
    return work, common, env


KILL_AT_STEP = 24  # a checkpoint in the middle of the second epoch: resuming must also skip its first 8 batches
TOTAL_STEPS = 32


def steps_run(log) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def assert_same_weights(actual_folder, expected_folder):
    expected, actual = load_file(expected_folder / "model.safetensors"), load_file(actual_folder / "model.safetensors")
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert torch.equal(actual[name], expected[name]), f"{name} differs after resuming"


@pytest.fixture(scope="module")
def uninterrupted_run(resume_setup):
    """The reference: the same command, never killed (it keeps a checkpoint every 8 steps)."""
    work, common, env = resume_setup
    output_dir, log = work / "uninterrupted", work / "uninterrupted-steps.log"
    completed = run_script(
        common + ["--output_dir", output_dir], cwd=work, script=work / "driver.py", WAVE_STEP_LOG=log, **env
    )
    assert completed.returncode == 0, output_tail(completed)
    assert steps_run(log) == list(range(1, TOTAL_STEPS + 1))
    return output_dir


def test_killed_run_resumes_to_the_weights_of_an_uninterrupted_run(resume_setup, uninterrupted_run):
    work, common, env = resume_setup
    driver = work / "driver.py"
    killed, killed_log = work / "killed", work / "killed-steps.log"
    argv = common + ["--output_dir", killed]
    kill = {"WAVE_KILL_AT_STEP": KILL_AT_STEP}
    completed = run_script(argv, cwd=work, script=driver, WAVE_STEP_LOG=killed_log, **kill, **env)
    assert completed.returncode == -signal.SIGKILL, output_tail(completed)
    assert steps_run(killed_log) == list(range(1, KILL_AT_STEP + 1))
    checkpoint = killed / f"checkpoint-{KILL_AT_STEP}"
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        assert (checkpoint / name).is_file(), f"{name} missing from {checkpoint}"
    assert not (killed / "model.safetensors").exists(), "the killed run must not have reached its final save"

    # The same command again: the script finds the checkpoint in output_dir and continues from it.
    resumed_log = work / "resumed-steps.log"
    completed = run_script(argv, cwd=work, script=driver, WAVE_STEP_LOG=resumed_log, **env)
    assert completed.returncode == 0, output_tail(completed)
    assert f"Resuming from {checkpoint}" in completed.stdout + completed.stderr, output_tail(completed)
    assert steps_run(resumed_log) == list(range(KILL_AT_STEP + 1, TOTAL_STEPS + 1))

    assert_same_weights(killed, uninterrupted_run)
    # Not a vacuous comparison: the last 8 steps moved the weights away from the checkpoint.
    at_kill, final = load_file(checkpoint / "model.safetensors"), load_file(killed / "model.safetensors")
    assert any(not torch.equal(at_kill[name], final[name]) for name in final)
    expected_results = json.loads((uninterrupted_run / "all_results.json").read_text())
    resumed_results = json.loads((killed / "all_results.json").read_text())
    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy"):
        assert resumed_results[key] == expected_results[key], key


def test_resume_from_checkpoint_argument(resume_setup, uninterrupted_run):
    """--resume_from_checkpoint continues from the checkpoint it names, here into a fresh output folder."""
    work, common, env = resume_setup
    output_dir, log = work / "explicit", work / "explicit-steps.log"
    argv = common + ["--output_dir", output_dir, "--resume_from_checkpoint", uninterrupted_run / "checkpoint-16"]
    completed = run_script(argv, cwd=work, script=work / "driver.py", WAVE_STEP_LOG=log, **env)
    assert completed.returncode == 0, output_tail(completed)
    assert steps_run(log) == list(range(17, TOTAL_STEPS + 1))
    assert_same_weights(output_dir, uninterrupted_run)


# ---------------------------------------------------------------------------------------------------------------
# parse_arguments: a JSON preset, then command-line overrides
# ---------------------------------------------------------------------------------------------------------------


def write_preset(path, **values):
    preset = {
        "config_name": "configuration/models/wave-ultra-small.json",
        "dataset_name": "stanfordnlp/imdb",
        "class_names": "negative,positive",
        "max_seq_length": 256,
        "output_dir": str(path.parent / "out"),
        "do_train": True,
        "learning_rate": 0.001,
        "per_device_train_batch_size": 64,
        "num_train_epochs": 4,
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "load_best_model_at_end": True,
        "metric_for_best_model": "accuracy",
        "report_to": "none",
        "seed": 42,
        "use_cpu": True,
        **values,
    }
    path.write_text(json.dumps(preset))
    return str(path)


def test_preset_values_reach_all_three_argument_groups(tmp_path):
    model_args, data_args, training_args, _ = parse_classification_arguments([write_preset(tmp_path / "p.json")])
    assert model_args.config_name.endswith("wave-ultra-small.json")
    assert data_args.dataset_name == "stanfordnlp/imdb"
    assert data_args.class_names == "negative,positive"
    assert data_args.max_seq_length == 256
    assert data_args.csv_header is True  # a default the preset leaves alone
    assert training_args.learning_rate == 0.001
    assert training_args.per_device_train_batch_size == 64
    assert training_args.num_train_epochs == 4
    assert training_args.do_train is True
    assert training_args.load_best_model_at_end is True
    assert training_args.use_cpu is True
    assert training_args.report_to == []  # "none"
    assert training_args.output_dir == str(tmp_path / "out")


def test_command_line_overrides_the_preset(tmp_path):
    preset = write_preset(tmp_path / "p.json")
    argv = [preset, "--learning_rate", "0.02", "--max_seq_length", "64", "--load_best_model_at_end", "false",
            "--config_overrides", "hidden_size=32", "--csv_header", "false", "--seed", "3"]  # fmt: skip
    model_args, data_args, training_args, _ = parse_classification_arguments(argv)
    assert training_args.learning_rate == 0.02
    assert data_args.max_seq_length == 64
    assert training_args.load_best_model_at_end is False
    assert model_args.config_overrides == "hidden_size=32"
    assert data_args.csv_header is False
    assert training_args.seed == 3
    assert data_args.dataset_name == "stanfordnlp/imdb"  # untouched preset values stay


def test_preset_booleans_lists_dicts_and_nulls(tmp_path):
    preset = write_preset(
        tmp_path / "p.json",
        csv_header=False,
        report_to=["none"],
        lr_scheduler_kwargs={"power": 2.0},
        max_train_samples=None,  # JSON null keeps the default
        tokenizer_name=None,
    )
    model_args, data_args, training_args, _ = parse_classification_arguments([preset])
    assert data_args.csv_header is False
    assert training_args.report_to == []
    assert training_args.lr_scheduler_kwargs == {"power": 2.0}
    assert data_args.max_train_samples is None
    assert model_args.tokenizer_name is None


def test_presets_and_config_paths_resolve_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model_args, data_args, _, _ = parse_classification_arguments(
        ["configuration/train/imdb-ultra-small.json", "--output_dir", str(tmp_path / "out")]
    )
    assert model_args.config_name == str(REPO_ROOT / "configuration" / "models" / "wave-ultra-small.json")
    assert data_args.dataset_name == "stanfordnlp/imdb"


# Training presets name a model config; the other JSON files in configuration/ are model configs or ablation specs.
TRAINING_PRESETS = sorted(
    p.name for p in (REPO_ROOT / "configuration" / "train").glob("*.json") if "config_name" in json.loads(p.read_text())
)


def test_there_are_training_presets():
    assert "imdb-modulation.json" in TRAINING_PRESETS


@pytest.mark.parametrize("preset", TRAINING_PRESETS)
def test_every_shipped_training_preset_parses(preset, tmp_path):
    values = json.loads((REPO_ROOT / "configuration" / "train" / preset).read_text())
    model_args, data_args, training_args, schedule_args = parse_classification_arguments(
        [f"configuration/train/{preset}", "--output_dir", str(tmp_path / "out")]
    )
    assert model_args.config_name is not None
    assert training_args.learning_rate == values["learning_rate"]
    if schedule_args.schedule == "fixed":  # with `schedule: data` the length comes from the data
        assert data_args.max_seq_length == values["max_seq_length"]
    else:
        assert "max_seq_length" not in values and "num_train_epochs" not in values


def test_command_line_without_a_preset(tmp_path):
    config = write_wave_config(tmp_path / "c.json")
    model_args, data_args, training_args, _ = parse_classification_arguments(
        ["--config_name", str(config), "--train_file", "a.csv", "--output_dir", str(tmp_path / "out")]
    )
    assert model_args.config_name == str(config)
    assert data_args.train_file == "a.csv"


def test_a_model_is_required(tmp_path):
    with pytest.raises(ValueError, match="config_name .*model_name_or_path"):
        parse_classification_arguments(["--dataset_name", "x", "--output_dir", str(tmp_path)])


def test_missing_preset_or_config_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-preset.json"):
        parse_classification_arguments([str(tmp_path / "no-such-preset.json")])
    with pytest.raises(FileNotFoundError, match="no-such-config.json"):
        parse_classification_arguments(["--config_name", "no-such-config.json", "--output_dir", str(tmp_path)])


@pytest.mark.parametrize("length", ["0", "-8"])
def test_max_seq_length_that_is_not_positive_is_refused_on_the_command_line(length, tmp_path):
    preset = write_preset(tmp_path / "p.json")
    with pytest.raises(ValueError, match=f"max_seq_length must be a positive number of tokens, got {length}"):
        parse_classification_arguments([preset, "--max_seq_length", length])


# ---------------------------------------------------------------------------------------------------------------
# build_model: a checkpoint whose shapes differ is refused unless asked for
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def two_class_checkpoint(tmp_path):
    config = WaveConfig(vocab_size=64, hidden_size=16, intermediate_size=0, num_labels=2)
    WaveForSequenceClassification(config).save_pretrained(tmp_path / "two-classes")
    return str(tmp_path / "two-classes")


def test_fine_tuning_a_checkpoint_with_other_classes_is_refused_by_default(two_class_checkpoint):
    model_args = ModelArguments(model_name_or_path=two_class_checkpoint)
    with pytest.raises(ValueError, match="--ignore_mismatched_sizes true"):
        build_model(model_args, ["a", "b", "c"])


def test_ignore_mismatched_sizes_reinitialises_only_what_does_not_fit(two_class_checkpoint):
    saved = load_file(f"{two_class_checkpoint}/model.safetensors")
    model_args = ModelArguments(model_name_or_path=two_class_checkpoint, ignore_mismatched_sizes=True)
    model = build_model(model_args, ["a", "b", "c"])
    assert model.classifier.out_features == 3
    loaded = model.state_dict()
    kept = [key for key in saved if not key.startswith("classifier.")]
    assert kept and all(torch.equal(loaded[key], saved[key]) for key in kept)
    matching = build_model(ModelArguments(model_name_or_path=two_class_checkpoint), ["a", "b"])
    assert torch.equal(matching.classifier.weight, saved["classifier.weight"])
