"""Accuracy and F1 as one `evaluate` metric module, shipped so `evaluate.load(<this folder>)` works offline (the
Hub's `accuracy` and `f1` modules compute the same with scikit-learn)."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score


class ClassificationScores(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy (share of predictions equal to the references) and F1 (`average` as in scikit-learn).",
            citation="",
            inputs_description="predictions and references: lists of class ids.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, average="macro"):
        return {
            "accuracy": float(accuracy_score(references, predictions)),
            "f1": float(f1_score(references, predictions, average=average)),
        }
