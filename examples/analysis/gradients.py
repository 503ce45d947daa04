#!/usr/bin/env python
"""Gradients (Token2Wave, arXiv 2411.06989): per-batch gradient norms of the text vector, of the input token
embeddings and of the classifier, for the Wave Network and the Transformer baselines.

    python examples/analysis/gradients.py [--quick] [--data_dir ../shared/data/imdb] [--models a,b,...]

The models and batches are those of convergence.py (500 batches of 32 IMDB reviews, length 256). The model code
is untouched: forward hooks on the base model and on the word-embedding module attach tensor hooks to their
outputs, which see the gradient of the batch-mean loss during each backward pass:

- pooled: the text vector handed to the classifier (Wave: the masked mean of the last layer; BERT / MiniLM: the
  pooler output, tanh(W h_[CLS])), a (batch, d) tensor;
- embeddings: the word-embedding output for every token of every text, (batch, length, d): the whole input text;
- classifier: the classifier's weight and bias gradients, read after backward;
- all: every trainable parameter (the norm that gradient clipping sees).

Norms are L2 norms over the whole tensor (all texts of the batch), before clipping. Writes gradients.json (every
series), gradients.md (median and spread per model and quantity) and gradients.png (one panel per quantity).
"""

import sys

import matplotlib.pyplot as plt
import numpy as np
import torch

from wave_examples.analysis import (
    COLORS,
    AnalysisData,
    budget_label,
    build_model,
    markdown_table,
    moving_average,
    output_dir,
    parameter_counts,
    parse_settings,
    run_info,
    save_figure,
    train,
    training_samples,
    write_json,
    write_markdown,
)

QUANTITIES = {
    "pooled": "text vector given to the classifier (pooled / [CLS])",
    "embeddings": "input token embeddings (whole text)",
    "classifier": "classifier parameters",
    "all": "all trainable parameters",
}


class GradientRecorder:
    """Records, for every training batch, the gradient norms of `QUANTITIES` through hooks on a classifier.

    Use as the `on_backward` callback of `common.train`; call `remove()` when done.
    """

    def __init__(self, model):
        self.series = {quantity: [] for quantity in QUANTITIES}
        self._pending = {}
        self._handles = [
            model.base_model.register_forward_hook(self._on_base_model_output),
            model.get_input_embeddings().register_forward_hook(self._on_embeddings_output),
        ]

    def _on_base_model_output(self, module, inputs, output):
        pooled = output.pooler_output if hasattr(output, "pooler_output") else output[1]
        self._watch("pooled", pooled)

    def _on_embeddings_output(self, module, inputs, output):
        self._watch("embeddings", output)

    def _watch(self, quantity: str, tensor: torch.Tensor):
        if torch.is_grad_enabled() and tensor.requires_grad:  # not during evaluation
            tensor.register_hook(lambda grad: self._pending.__setitem__(quantity, grad.detach().norm().item()))

    def __call__(self, step: int, model):
        # Frozen embeddings have no gradient: NaN, never a silent 0.
        self.series["pooled"].append(self._pending.pop("pooled", float("nan")))
        self.series["embeddings"].append(self._pending.pop("embeddings", float("nan")))
        self.series["classifier"].append(_norm(p.grad for p in model.classifier.parameters()))
        self.series["all"].append(_norm(p.grad for p in model.parameters() if p.requires_grad))

    def remove(self):
        for handle in self._handles:
            handle.remove()


def _norm(gradients) -> float:
    norms = [g.detach().norm() for g in gradients if g is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else float("nan")


def main(argv: list[str] | None = None) -> dict:
    settings = parse_settings("gradients", __doc__, argv)
    data = AnalysisData(settings, training_samples(settings), settings["eval_samples"])
    results = {}
    for name in settings["models"]:
        spec = settings["model_specs"][name]
        model = build_model(name, settings, data.num_labels)
        recorder = GradientRecorder(model)
        history = train(model, data, settings, spec["learning_rate"], on_backward=recorder, label=name)
        recorder.remove()
        results[name] = model_result(spec, model, history, recorder)
        del model
    return write_outputs(settings, output_dir(settings), len(data.test), results)


def model_result(spec: dict, model, history: dict, recorder: GradientRecorder) -> dict:
    """One model's entry of gradients.json: its training history and the recorded norms."""
    return {
        "learning_rate": spec["learning_rate"],
        **parameter_counts(model),
        "step": history["step"],
        "train_loss": history["train_loss"],
        "gradient_norms": recorder.series,
        "final_test": history["eval"][-1],
        "diverged": history["diverged"],
        "seconds_per_batch": history["seconds_per_batch"],
    }


def write_outputs(settings: dict, folder, test_samples: int, results: dict) -> dict:
    """gradients.json, gradients.png and gradients.md in `folder` (also used by `convergence.py --record_gradients`)."""
    payload = {"run": run_info(settings), "quantities": QUANTITIES, "test_samples": test_samples, "models": results}
    payload["summary"] = summarize(results)
    write_json(folder / "gradients.json", payload)
    plot(payload, settings, folder / "gradients.png")
    write_markdown(folder / "gradients.md", table(payload, settings))
    return payload


def summarize(results: dict) -> dict:
    """Median and spread (10th-90th percentile) over the run, and the medians of its first and last tenth."""
    summary = {}
    for name, result in results.items():
        summary[name] = {}
        for quantity, values in result["gradient_norms"].items():
            values = np.asarray(values, dtype=float)
            tenth = max(1, len(values) // 10)
            finite = values[np.isfinite(values)]
            if finite.size == 0:
                summary[name][quantity] = None
                continue
            summary[name][quantity] = {
                "median": float(np.median(finite)),
                "p10": float(np.percentile(finite, 10)),
                "p90": float(np.percentile(finite, 90)),
                "first_tenth_median": float(np.nanmedian(values[:tenth])),
                "last_tenth_median": float(np.nanmedian(values[-tenth:])),
            }
    return summary


def plot(payload: dict, settings: dict, path):
    figure, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    window = max(1, settings["max_steps"] // 50)
    for axis, (quantity, description) in zip(axes.flat, QUANTITIES.items()):
        for name, result in payload["models"].items():
            values = np.asarray(result["gradient_norms"][quantity], dtype=float)
            if not np.isfinite(values).any():
                continue
            color = COLORS.get(name)
            axis.plot(result["step"], values, lw=0.5, alpha=0.3, color=color)
            smoothed = moving_average(values, window)
            axis.plot(result["step"][len(values) - len(smoothed):], smoothed, lw=1.4, color=color, label=name)
        axis.set_yscale("log")
        axis.set(title=f"{quantity}: {description}", ylabel="gradient L2 norm")
        axis.legend(fontsize=8)
    smoothing = f"thin: every batch; thick: mean of {window}" if window > 1 else "every batch"
    for axis in axes[-1]:
        axis.set_xlabel(f"training batch ({smoothing})")
    figure.suptitle(budget_label(settings), fontsize=9)
    save_figure(figure, path)


def table(payload: dict, settings: dict) -> str:
    header = ["quantity", "model", "median", "10th-90th percentile", "median, first 10%", "median, last 10%"]
    rows = []
    for quantity in QUANTITIES:
        for name, summary in payload["summary"].items():
            s = summary[quantity]
            if s is None:
                rows.append([quantity, name, "no gradient", "", "", ""])
                continue
            rows.append([quantity, name, f"{s['median']:.3g}", f"{s['p10']:.3g} - {s['p90']:.3g}",
                         f"{s['first_tenth_median']:.3g}", f"{s['last_tenth_median']:.3g}"])
    accuracies = ", ".join(f"{name} {r['final_test']['accuracy']:.4f}" for name, r in payload["models"].items())
    return (
        f"{budget_label(settings)}. Gradient L2 norms of the batch-mean loss, before clipping.\n\n"
        + markdown_table(header, rows)
        + f"\nTest accuracy after training ({payload['test_samples']} reviews): {accuracies}.\n"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
