"""The recipe that competes with linear models (a Wave Network plus a wide part on hashed n-grams) and the linear
baseline it is compared with: `examples/run_linear_baseline.py` and the `imdb-wide-*` presets end to end on a small
IMDB subset (and the baseline's NB-weighted models on TREC), the wide part's own learning rate in Trainer, and JSON
config overrides.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/examples/test_wide_recipe.py -q`
"""

import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from test_run_classification import imdb_dir, output_tail, run_script, write_wave_config

from conftest import REPO_ROOT, shared_data_dir
from example_scripts import load_example
from modeling_wave import WaveConfig, WaveForSequenceClassification, WaveTrainingArguments
from wave_examples import training

run_linear_baseline = load_example("run_linear_baseline")

SUBSET = ["--max_train_samples", "2000", "--max_eval_samples", "500", "--max_test_samples", "1000"]
TREC_SUBSET = ["--max_train_samples", "1000", "--max_eval_samples", "300", "--max_test_samples", "300"]


def trec_dir():
    """The TREC copy beside the repository; as for IMDB, CI must have it."""
    return shared_data_dir("trec")


def test_linear_baseline_end_to_end_on_an_imdb_subset(tmp_path):
    output_dir = tmp_path / "linear"
    argv = ["configuration/linear/linear-imdb.json", "--data_dir", str(imdb_dir()), "--output_dir", str(output_dir), *SUBSET]
    returned = run_linear_baseline.main(argv)
    results = json.loads((output_dir / "all_results.json").read_text())
    assert results == pytest.approx(returned)
    assert (results["eval_samples"], results["test_samples"]) == (500, 1000)
    assert results["test_accuracy"] >= 0.75 and results["eval_accuracy"] >= 0.75, results
    settings = json.loads((output_dir / "baseline_settings.json").read_text())
    grid = {(row["model"], row["C"]): row["eval_accuracy"] for row in settings["grid"]}
    assert len(grid) == 2 * 7 + 2 * 5  # every family of the preset, each with its own C values
    assert grid[results["best_model"], results["best_C"]] == max(grid.values())  # chosen on validation, not on test
    assert settings["class_names"] == ["negative", "positive"]


def test_linear_baseline_reads_the_splits_of_run_classification(tmp_path):
    """The same data options and seed give the same validation texts in both scripts."""
    argv = ["configuration/linear/linear-imdb.json", "--data_dir", str(imdb_dir()), *SUBSET]
    data_args, baseline_args, _ = run_linear_baseline.parse_arguments(argv)
    _, classification_data_args, _, _ = training.parse_classification_arguments(
        ["configuration/train/imdb-wide-modulation.json", "--data_dir", str(imdb_dir()), *SUBSET]
    )
    data_args.max_seq_length = classification_data_args.max_seq_length  # a tokenizer's limit: the linear model reads whole texts
    assert data_args == classification_data_args
    assert baseline_args.seed == 42


@pytest.mark.parametrize("c_values", ["0,1", "-4", ""])
@pytest.mark.parametrize("name", ["tfidf_c_values", "nb_c_values"])
def test_linear_baseline_rejects_bad_c_values(name, c_values):
    with pytest.raises(ValueError, match=name):
        run_linear_baseline.parse_arguments(["configuration/linear/linear-imdb.json", f"--{name}", c_values])


def test_linear_baseline_rejects_unknown_models():
    with pytest.raises(ValueError, match="'svm'.*choose from tfidf-lr-12, tfidf-lr-13, nb-lr-12, nb-lr-13"):
        run_linear_baseline.parse_arguments(["configuration/linear/linear-default.json", "--models", "nb-lr-12,svm"])


def test_linear_baseline_nb_lr_end_to_end_on_a_trec_subset(tmp_path):
    """Six classes: one binary model per class against the rest, on the default preset with one family."""
    output_dir = tmp_path / "nb"
    argv = ["configuration/linear/linear-default.json", "--data_dir", str(trec_dir()), "--output_dir", str(output_dir),
            "--models", "nb-lr-12", "--nb_c_values", "1,3", *TREC_SUBSET]  # fmt: skip
    results = run_linear_baseline.main(argv)
    assert results == pytest.approx(json.loads((output_dir / "all_results.json").read_text()))
    assert results["best_model"] == "nb-lr-12" and results["best_C"] in (1.0, 3.0)
    assert (results["eval_samples"], results["test_samples"]) == (300, 300)
    assert results["test_accuracy"] >= 0.6, results
    assert 0 < results["best_fit_runtime"] <= results["train_runtime"]
    assert len(json.loads((output_dir / "baseline_settings.json").read_text())["class_names"]) == 6


def test_linear_baseline_chooses_the_best_validation_accuracy_of_the_grid(tmp_path):
    argv = ["configuration/linear/linear-default.json", "--data_dir", str(trec_dir()), "--output_dir", str(tmp_path),
            "--tfidf_c_values", "0.25,16", "--nb_c_values", "0.1,3", *TREC_SUBSET]  # fmt: skip
    results = run_linear_baseline.main(argv)
    grid = json.loads((tmp_path / "baseline_settings.json").read_text())["grid"]
    assert {row["model"] for row in grid} == set(run_linear_baseline.MODELS) and len(grid) == 4 * 2
    best = max(grid, key=lambda row: row["eval_accuracy"])  # the first of equals, as the script keeps
    assert (results["best_model"], results["best_C"]) == (best["model"], best["C"])
    assert results["eval_accuracy"] == best["eval_accuracy"]


def test_linear_baseline_nb_log_count_ratio_of_a_hand_made_corpus():
    texts = ["good good movie", "bad movie", "good plot"]  # vocabulary: bad, good, movie, plot
    binary = CountVectorizer(binary=True).fit_transform(texts)  # "good" counts once in the first text
    ratios = run_linear_baseline.log_count_ratio(binary, np.array([True, False, True]), alpha=1.0)
    p, q = np.array([1, 3, 2, 2]), np.array([2, 1, 2, 1])  # 1 + counts in the class (texts 1, 3), in the rest (2)
    np.testing.assert_allclose(ratios, np.log((p / 8) / (q / 6)))


def test_linear_baseline_shared_counts_give_what_each_vectoriser_gives():
    """The TF-IDF and NB families of one n-gram order share one counting pass; it must change neither's features."""
    texts = {"train": ["a good good film", "a bad film", "good plot , bad film", "bad bad plot"],
             "validation": ["a good plot", "film film film"]}  # fmt: skip
    args, labels = run_linear_baseline.LinearBaselineArguments(min_df=2), np.array([1, 0, 1, 0])
    _, counts = run_linear_baseline.count_ngrams(texts, 2, args.min_df)
    _, tfidf = run_linear_baseline.weigh_counts("tfidf", args, counts, labels)
    nb_family, nb = run_linear_baseline.weigh_counts("nb", args, counts, labels)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit(texts["train"])
    np.testing.assert_allclose(tfidf["validation"].toarray(), vectorizer.transform(texts["validation"]).toarray())
    binary = CountVectorizer(ngram_range=(1, 2), min_df=2, binary=True).fit(texts["train"])
    binary = binary.transform(texts["validation"])
    (scaled,) = nb["validation"]  # two classes: one model, on the second class's ratios
    np.testing.assert_allclose(scaled.toarray(), binary.toarray() * nb_family.ratios[0])


def test_main_job_preset_end_to_end_on_an_imdb_subset(tmp_path):
    """The main job's preset, shrunk to a 32-wide model on 2,000 reviews of 128 tokens: it learns and saves."""
    output_dir = tmp_path / "ngrams"
    argv = [
        "configuration/train/imdb-ngrams-modulation.json", "--data_dir", imdb_dir(), "--output_dir", output_dir,
        *SUBSET, "--max_seq_length", 128, "--config_overrides", json.dumps({"hidden_size": 32}),
        "--disable_tqdm", "true", "--save_strategy", "no", "--load_best_model_at_end", "false",
    ]  # fmt: skip
    completed = run_script(argv, cwd=tmp_path)
    assert completed.returncode == 0, output_tail(completed)
    results = json.loads((output_dir / "all_results.json").read_text())
    assert results["test_accuracy"] >= 0.75, results
    config = json.loads((output_dir / "config.json").read_text())
    assert config["wide_ngram_sizes"] == [1, 2, 3] and config["ngram_sizes"] == [2, 3] and config["hidden_size"] == 32
    reloaded = WaveForSequenceClassification.from_pretrained(output_dir)
    assert reloaded.wide.weight.abs().sum() > 0  # the trained wide part was saved, not re-initialised


def test_wide_part_gets_its_own_learning_rate(tmp_path):
    config = WaveConfig(vocab_size=50, hidden_size=16, intermediate_size=0, num_labels=2, wide_ngram_sizes=[1, 2],
                        wide_buckets=100)
    model = WaveForSequenceClassification(config)
    args = WaveTrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-3, use_cpu=True, report_to="none", wide_learning_rate=0.03
    )
    trainer = training.ClassificationTrainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates[id(model.wide.weight)] == 0.03
    assert {rates[id(p)] for name, p in model.named_parameters() if not name.startswith("wide.")} == {1e-3}
    assert len(rates) == len(list(model.parameters()))  # every parameter is in exactly one group


def test_json_config_overrides_set_list_fields(tmp_path):
    config_path = write_wave_config(tmp_path / "c.json")
    overrides = json.dumps({"ngram_sizes": [2, 3], "wide_ngram_sizes": [1, 2], "token_dropout_prob": 0.2})
    model_args, _, _, _ = training.parse_classification_arguments(
        ["--config_name", str(config_path), "--output_dir", str(tmp_path / "out"), "--config_overrides", overrides]
    )
    model = training.build_model(model_args, ["negative", "positive"])
    assert model.config.ngram_sizes == [2, 3] and model.wide is not None
    assert model.config.token_dropout_prob == 0.2
    bad_args, _, _, _ = training.parse_classification_arguments(
        ["--config_name", str(config_path), "--output_dir", str(tmp_path / "out"),
         "--config_overrides", json.dumps({"wide_ngram_sizes": [0]})]
    )  # fmt: skip
    with pytest.raises(ValueError, match="`wide_ngram_sizes`"):
        training.build_model(bad_args, ["negative", "positive"])


@pytest.mark.parametrize("recipe", ["wide", "ngrams"])
@pytest.mark.parametrize("mode", ["modulation", "interference"])
def test_wide_presets_name_existing_model_configs(recipe, mode):
    preset = json.loads((REPO_ROOT / "configuration" / "train" / f"imdb-{recipe}-{mode}.json").read_text())
    config = WaveConfig.from_pretrained(REPO_ROOT / preset["config_name"])
    assert config.wave_mode == mode and list(config.wide_ngram_sizes) == [1, 2, 3]
    assert list(config.ngram_sizes) == ([2, 3] if recipe == "ngrams" else [])
    assert preset["wide_learning_rate"] > preset["learning_rate"]


def test_json_config_overrides_reject_unknown_fields(tmp_path):
    model_args, _, _, _ = training.parse_classification_arguments(
        ["--config_name", str(write_wave_config(tmp_path / "c.json")), "--output_dir", str(tmp_path / "out"),
         "--config_overrides", json.dumps({"ngram_size": [2]})]
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"does not have: \['ngram_size'\]"):
        training.build_model(model_args, ["negative", "positive"])
