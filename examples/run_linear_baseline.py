#!/usr/bin/env python
"""The baseline a practitioner would tune: linear models of word n-grams (scikit-learn), chosen on validation.

    python examples/run_linear_baseline.py configuration/linear/linear-imdb.json --data_dir ../shared/data/imdb
    python examples/run_linear_baseline.py configuration/linear/linear-default.json --data_dir ../shared/data/trec

Four model families, each with its own grid of the inverse regularisation strength C:

- `tfidf-lr-12`, `tfidf-lr-13`: TF-IDF (sublinear tf) of word 1-2-grams / 1-3-grams + logistic regression;
- `nb-lr-12`, `nb-lr-13`: NB-weighted logistic regression, the features of NBSVM (Wang & Manning, 2012): binarised
  n-gram counts, each scaled by its log-count ratio; with more than two classes, one binary model per class against
  the rest, and the class whose model scores highest wins.

It reads the data exactly as `run_classification.py` does (the same data options, the same seeded 80/20 split of
the training set), picks the (model, C) with the best validation accuracy, refits nothing, scores the test set once
with that model alone and writes `all_results.json` (the main job's keys: `eval_accuracy`, `test_accuracy`,
`test_f1`, `train_runtime`, ..., and `best_model`, `best_C`) and the whole grid (`baseline_settings.json`).
"""

import json
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import binarize

from wave_examples import option
from wave_examples.arguments import parse_preset_arguments
from wave_examples.arguments import DataArguments
from wave_examples.data import load_raw_splits

logger = logging.getLogger(__name__)
HTML_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)  # IMDB reviews hold literal <br /> tags

# Each model family: the weights it puts on the n-gram counts, and the highest n-gram order.
MODELS = {"tfidf-lr-12": ("tfidf", 2), "tfidf-lr-13": ("tfidf", 3), "nb-lr-12": ("nb", 2), "nb-lr-13": ("nb", 3)}


@dataclass
class LinearBaselineArguments:
    """The model families, their grids of C values and where the results go."""

    output_dir: str = option("outputs/linear-baseline", "Where all_results.json goes.")
    models: str = option(",".join(MODELS), f"Comma-separated model families to tune, from {', '.join(MODELS)}.")
    min_df: int = option(2, "Ignore n-grams found in fewer training texts (every family).")
    sublinear_tf: bool = option(True, "TF-IDF families: 1 + log(tf) instead of raw term counts.")
    tfidf_c_values: str = option("0.25,1,4,16,64,256,1024", "Comma-separated C values of the TF-IDF families.")
    nb_c_values: str = option("0.1,0.3,1,3,8", "Comma-separated C values of the NB-weighted families.")
    nb_alpha: float = option(1.0, "Smoothing added to every feature count of the NB log-count ratios.")
    max_iter: int = option(1000, "Iterations of the lbfgs solver.")
    seed: int = option(42, "Seed of the train / validation split (as run_classification).")


def parse_arguments(argv: list[str]):
    """`preset.json [--key value ...]`: the preset's values first, so that later command-line values win.

    Returns the data and baseline arguments and the grid: each chosen model family with its C values.
    """
    data_args, baseline_args = parse_preset_arguments((DataArguments, LinearBaselineArguments), argv)
    models = list(dict.fromkeys(name.strip() for name in baseline_args.models.split(",")))  # in order, once each
    unknown = [name for name in models if name not in MODELS]
    if unknown:
        raise ValueError(f"--models: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(MODELS)}.")
    if baseline_args.nb_alpha <= 0:
        raise ValueError(f"--nb_alpha must be positive, got {baseline_args.nb_alpha!r}.")
    c_values = {
        "tfidf": positive_numbers("tfidf_c_values", baseline_args.tfidf_c_values),
        "nb": positive_numbers("nb_c_values", baseline_args.nb_c_values),
    }
    return data_args, baseline_args, {name: c_values[MODELS[name][0]] for name in models}


def positive_numbers(name: str, text: str) -> list[float]:
    try:
        values = [float(value) for value in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) <= 0:
        raise ValueError(f"--{name} must be comma-separated positive numbers, got {text!r}.")
    return values


def clean_text(text: str) -> str:
    return HTML_BREAK.sub(" ", text).lower()


def log_count_ratio(binary, in_class: np.ndarray, alpha: float) -> np.ndarray:
    """r = log((p / |p|_1) / (q / |q|_1)), p and q the smoothed feature counts in the class and in the rest."""
    p = alpha + np.asarray(binary[in_class].sum(axis=0)).ravel()
    q = alpha + np.asarray(binary[~in_class].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


class TfidfLogisticRegression:
    """TF-IDF weights of the n-gram counts, then one (multinomial) logistic regression."""

    def __init__(self, args: LinearBaselineArguments):
        self.args = args

    def fit_weights(self, counts, labels: np.ndarray):
        self.tfidf = TfidfTransformer(sublinear_tf=self.args.sublinear_tf).fit(counts)
        return self

    def transform(self, counts):
        return self.tfidf.transform(counts)

    def fit(self, features, labels: np.ndarray, c: float):
        return LogisticRegression(C=c, max_iter=self.args.max_iter).fit(features, labels)

    def predict(self, model, features) -> np.ndarray:
        return model.predict(features)


class NBLogisticRegression:
    """Binarised n-gram counts scaled by their NB log-count ratios, then binary logistic regressions."""

    def __init__(self, args: LinearBaselineArguments):
        self.args = args

    def fit_weights(self, counts, labels: np.ndarray):
        self.classes = np.unique(labels)
        # Two classes need one model (the ratios of the first class are those of the second, negated); more need one
        # model per class against the rest, each on the features scaled by that class's ratios.
        self.targets = self.classes[1:] if len(self.classes) == 2 else self.classes
        binary = binarize(counts)
        self.ratios = [log_count_ratio(binary, labels == target, self.args.nb_alpha) for target in self.targets]
        return self

    def transform(self, counts) -> list:
        binary = binarize(counts)
        return [binary @ sparse.diags(ratios) for ratios in self.ratios]

    def fit(self, features: list, labels: np.ndarray, c: float) -> list:
        return [
            LogisticRegression(C=c, max_iter=self.args.max_iter).fit(scaled, labels == target)
            for scaled, target in zip(features, self.targets)
        ]

    def predict(self, models: list, features: list) -> np.ndarray:
        scores = np.column_stack([model.decision_function(scaled) for model, scaled in zip(models, features)])
        if len(models) == 1:
            return self.classes[(scores[:, 0] > 0).astype(int)]
        return self.classes[scores.argmax(axis=1)]


FAMILIES = {"tfidf": TfidfLogisticRegression, "nb": NBLogisticRegression}


@dataclass
class Choice:
    """The best (model, C) on validation, with what it takes to score new texts."""

    model_name: str
    c: float
    eval_accuracy: float
    vectorizer: CountVectorizer
    family: TfidfLogisticRegression | NBLogisticRegression
    model: object
    eval_predictions: np.ndarray
    fit_runtime: float  # counting the n-grams + the family's weights + this one fit


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def count_ngrams(texts: dict, ngram_max: int, min_df: int):
    """Word 1..ngram_max-gram counts of the training and validation texts, the vocabulary from training alone."""
    vectorizer = CountVectorizer(ngram_range=(1, ngram_max), min_df=min_df)
    counts = {"train": vectorizer.fit_transform(texts["train"])}
    counts["validation"] = vectorizer.transform(texts["validation"])
    return vectorizer, counts


def weigh_counts(kind: str, args: LinearBaselineArguments, counts: dict, labels: np.ndarray):
    """The family's weights fitted on the training counts, and the train and validation features."""
    family = FAMILIES[kind](args).fit_weights(counts["train"], labels)
    return family, {split: family.transform(split_counts) for split, split_counts in counts.items()}


def select_model(texts: dict, labels: dict, args: LinearBaselineArguments, grid: dict):
    """Every (model, C) of the grid fitted on train and scored on validation: the rows, per-family totals, the best.

    A family's features are made once and shared by its C values. The TF-IDF and the NB family of one n-gram order
    share one counting pass: `TfidfVectorizer` is `CountVectorizer` + `TfidfTransformer`, and
    `CountVectorizer(binary=True)` is the binarised counts (`min_df` counts documents either way), so both are
    exactly what their own vectoriser would give. The 1-2-gram and 1-3-gram families do not share: their TF-IDF rows
    are normalised over different vocabularies.
    """
    counted, rows, families, best = {}, [], {}, None
    for name, c_values in grid.items():
        kind, ngram_max = MODELS[name]
        if ngram_max not in counted:
            counted[ngram_max] = timed(count_ngrams, texts, ngram_max, args.min_df)
        (vectorizer, counts), count_seconds = counted[ngram_max]
        (family, features), weigh_seconds = timed(weigh_counts, kind, args, counts, labels["train"])
        vectorize_seconds = count_seconds + weigh_seconds  # what this family alone would spend, shared pass included
        fit_seconds = []
        for c in c_values:
            model, seconds = timed(family.fit, features["train"], labels["train"], c)
            predictions = family.predict(model, features["validation"])
            accuracy = float(accuracy_score(labels["validation"], predictions))
            rows.append({"model": name, "C": c, "eval_accuracy": accuracy, "fit_seconds": seconds})
            fit_seconds.append(seconds)
            logger.info(f"{name} C = {c:g}: validation accuracy {accuracy:.4f} (fit {seconds:.2f} s)")
            if best is None or accuracy > best.eval_accuracy:  # ties keep the earlier grid point
                best = Choice(name, c, accuracy, vectorizer, family, model, predictions, vectorize_seconds + seconds)
        families[name] = {
            "num_features": len(vectorizer.vocabulary_),
            "vectorize_seconds": vectorize_seconds,
            "fit_seconds": sum(fit_seconds),
            "total_seconds": vectorize_seconds + sum(fit_seconds),
        }
        logger.info(f"{name}: {families[name]['total_seconds']:.1f} s ({vectorize_seconds:.1f} s vectorising)")
    return rows, families, best


def scores(prefix: str, labels, predictions) -> dict:
    return {
        f"{prefix}_accuracy": float(accuracy_score(labels, predictions)),
        f"{prefix}_f1": float(f1_score(labels, predictions, average="macro")),
        f"{prefix}_samples": len(labels),
    }


def main(argv: list[str] | None = None) -> dict:
    data_args, args, grid = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    raw, label_names = load_raw_splits(data_args, seed=args.seed)
    texts = {split: [clean_text(t) for t in raw[split]["text"]] for split in raw}
    labels = {split: np.asarray(raw[split]["label"]) for split in raw}
    logger.info(f"Splits: { {split: len(t) for split, t in texts.items()} }; classes {label_names}")

    (rows, families, best), train_runtime = timed(select_model, texts, labels, args, grid)  # every vectoriser and fit

    # The test texts are vectorised and scored once, by the chosen model alone.
    test_predictions = best.family.predict(best.model, best.family.transform(best.vectorizer.transform(texts["test"])))
    results = {
        "train_runtime": train_runtime,
        "best_model": best.model_name,
        "best_C": best.c,
        "best_fit_runtime": best.fit_runtime,
        "num_features": len(best.vectorizer.vocabulary_),
    }
    results.update(scores("eval", labels["validation"], best.eval_predictions))
    results.update(scores("test", labels["test"], test_predictions))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "all_results.json").write_text(json.dumps(results, indent=2) + "\n")
    settings = {
        "data": asdict(data_args),
        "baseline": asdict(args),
        "grid": rows,
        "families": families,
        "class_names": label_names,
    }
    (output_dir / "baseline_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    logger.info(
        f"{best.model_name} C = {best.c:g} chosen on validation ({best.eval_accuracy:.4f}); "
        f"test accuracy {results['test_accuracy']:.4f}; {train_runtime:.1f} s in all -> {output_dir}"
    )
    return results


if __name__ == "__main__":
    main()
