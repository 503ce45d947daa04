"""F1 as an `evaluate` metric module, shipped so `evaluate.load(<this folder>)` works offline."""

import datasets
import evaluate
from sklearn.metrics import f1_score


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Harmonic mean of precision and recall; `average` as in scikit-learn.",
            citation="",
            inputs_description="predictions and references: lists of class ids.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None):
        score = f1_score(
            references, predictions, labels=labels, pos_label=pos_label, average=average, sample_weight=sample_weight
        )
        return {"f1": score.tolist() if hasattr(score, "tolist") and score.ndim else float(score)}
