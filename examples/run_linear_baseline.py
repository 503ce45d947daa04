#!/usr/bin/env python
"""The baseline a practitioner tries first: TF-IDF of word n-grams + logistic regression (scikit-learn).

    python examples/run_linear_baseline.py configuration/linear-imdb.json --data_dir ../shared/data/imdb

It reads the data exactly as `run_classification.py` does (the same data options, the same seeded 80/20 split of
the training set), chooses the inverse regularisation strength C on the validation split, refits nothing, scores
the test set once and writes `all_results.json` (the main job's keys: `eval_accuracy`, `test_accuracy`, `test_f1`,
`train_runtime`, ...) and the grid to the output folder.
"""

import json
import logging
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from wave_examples import option
from wave_examples.arguments import parse_preset_arguments
from wave_examples.data import DataArguments, load_raw_splits

logger = logging.getLogger(__name__)
HTML_BREAK = re.compile(r"<br\s*/?>", flags=re.IGNORECASE)  # IMDB reviews hold literal <br /> tags


@dataclass
class LinearBaselineArguments:
    """The vectoriser, the grid of C values and where the results go."""

    output_dir: str = option("outputs/linear-baseline", "Where all_results.json goes.")
    ngram_max: int = option(2, "Word n-grams of orders 1..ngram_max.")
    min_df: int = option(2, "Ignore n-grams found in fewer training texts.")
    sublinear_tf: bool = option(True, "1 + log(tf) instead of raw term counts.")
    c_values: str = option("1,4,16,64", "Comma-separated C values of LogisticRegression, chosen on validation.")
    max_iter: int = option(1000, "Iterations of the liblinear / lbfgs solver.")
    seed: int = option(42, "Seed of the train / validation split (as run_classification).")


def parse_arguments(argv: list[str]):
    """`preset.json [--key value ...]`: the preset's values first, so that later command-line values win."""
    data_args, baseline_args = parse_preset_arguments((DataArguments, LinearBaselineArguments), argv)
    try:
        c_values = [float(c) for c in baseline_args.c_values.split(",")]
    except ValueError:
        c_values = []
    if not c_values or min(c_values) <= 0:
        raise ValueError(f"--c_values must be comma-separated positive numbers, got {baseline_args.c_values!r}.")
    return data_args, baseline_args, c_values


def clean_text(text: str) -> str:
    return HTML_BREAK.sub(" ", text).lower()


def scores(prefix: str, labels, predictions) -> dict:
    return {
        f"{prefix}_accuracy": float(accuracy_score(labels, predictions)),
        f"{prefix}_f1": float(f1_score(labels, predictions, average="macro")),
        f"{prefix}_samples": len(labels),
    }


def main(argv: list[str] | None = None) -> dict:
    data_args, args, c_values = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    raw, label_names = load_raw_splits(data_args, seed=args.seed)
    texts = {split: [clean_text(t) for t in raw[split]["text"]] for split in raw}
    labels = {split: np.asarray(raw[split]["label"]) for split in raw}
    logger.info(f"Splits: { {split: len(t) for split, t in texts.items()} }; classes {label_names}")

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, args.ngram_max), min_df=args.min_df, sublinear_tf=args.sublinear_tf)
    features = {"train": vectorizer.fit_transform(texts["train"])}
    features.update({split: vectorizer.transform(texts[split]) for split in ("validation", "test")})
    grid, best = [], None
    for c in c_values:
        model = LogisticRegression(C=c, max_iter=args.max_iter).fit(features["train"], labels["train"])
        accuracy = accuracy_score(labels["validation"], model.predict(features["validation"]))
        grid.append({"C": c, "eval_accuracy": float(accuracy)})
        logger.info(f"C = {c:g}: validation accuracy {accuracy:.4f}")
        if best is None or accuracy > best[0]:
            best = (accuracy, c, model)
    train_runtime = time.perf_counter() - start  # vectorising and every fit of the grid

    _, best_c, model = best
    results = {"train_runtime": train_runtime, "best_C": best_c, "num_features": len(vectorizer.vocabulary_)}
    results.update(scores("eval", labels["validation"], model.predict(features["validation"])))
    results.update(scores("test", labels["test"], model.predict(features["test"])))  # the test set, used once
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "all_results.json").write_text(json.dumps(results, indent=2) + "\n")
    settings = {"data": asdict(data_args), "baseline": asdict(args), "grid": grid, "class_names": label_names}
    (output_dir / "baseline_settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    logger.info(f"C = {best_c:g} chosen on validation; test accuracy {results['test_accuracy']:.4f} -> {output_dir}")
    return results


if __name__ == "__main__":
    main()
