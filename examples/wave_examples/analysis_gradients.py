"""The gradient study of the analyses (docs/analysis.md section 2): a `TrainerCallback` that records gradient
norms through hooks, and the outputs `gradients.py` and `convergence.py --record_gradients` write.

For every training batch, the L2 norm (over the whole batch) of the gradient of the batch-mean loss, before
clipping, with respect to `QUANTITIES`. The model code is untouched: forward hooks on the base model and on the
word-embedding module attach tensor hooks to their outputs, and parameter hooks read each gradient once it is
accumulated, so that the norms are those of the backward pass, before the Trainer clips them.
"""

import matplotlib.pyplot as plt
import numpy as np
import torch
from transformers import TrainerCallback

from wave_examples import analysis

QUANTITIES = {
    "pooled": "text vector given to the classifier (pooled / [CLS])",
    "embeddings": "input token embeddings (whole text)",
    "classifier": "classifier parameters",
    "all": "all trainable parameters",
}


class GradientRecorder(TrainerCallback):
    """Records the gradient norms of `QUANTITIES` for every optimizer step of a Trainer; the hooks only observe.

    `record()` (called by the Trainer before each optimizer step) appends the norms of the last backward pass to
    `series`; the hooks are removed at the end of training (or by `remove()`).
    """

    def __init__(self, model):
        self.series = {quantity: [] for quantity in QUANTITIES}
        self._pending = {}  # quantity or id(parameter) -> norm tensor of the current backward pass
        self._classifier = list(model.classifier.parameters())
        self._trainable = [p for p in model.parameters() if p.requires_grad]
        self._handles = [
            model.base_model.register_forward_hook(self._on_base_model_output),
            model.get_input_embeddings().register_forward_hook(self._on_embeddings_output),
        ]
        # After accumulation, before clipping: the Trainer calls its callbacks only after it has clipped.
        self._handles += [p.register_post_accumulate_grad_hook(self._on_parameter_gradient) for p in self._trainable]

    def _on_base_model_output(self, module, inputs, output):
        pooled = output.pooler_output if hasattr(output, "pooler_output") else output[1]
        self._watch("pooled", pooled)

    def _on_embeddings_output(self, module, inputs, output):
        self._watch("embeddings", output)

    def _watch(self, quantity: str, tensor: torch.Tensor):
        if torch.is_grad_enabled() and tensor.requires_grad:  # not during evaluation
            tensor.register_hook(lambda grad: self._pending.__setitem__(quantity, grad.detach().norm()))

    def _on_parameter_gradient(self, parameter):
        self._pending[id(parameter)] = parameter.grad.detach().norm()

    def record(self):
        # Frozen embeddings have no gradient: NaN, never a silent 0.
        for quantity in ("pooled", "embeddings"):
            norm = self._pending.get(quantity)
            self.series[quantity].append(float("nan") if norm is None else norm.item())
        for quantity, parameters in (("classifier", self._classifier), ("all", self._trainable)):
            norms = [self._pending[id(p)] for p in parameters if id(p) in self._pending]
            total = torch.linalg.vector_norm(torch.stack(norms)).item() if norms else float("nan")
            self.series[quantity].append(total)
        self._pending.clear()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.record()

    def on_train_end(self, args, state, control, **kwargs):
        self.remove()

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []


def model_result(spec: dict, model, history: dict, recorder: GradientRecorder) -> dict:
    """One model's entry of gradients.json: its training history and the recorded norms."""
    return {
        "learning_rate": spec["learning_rate"],
        **analysis.parameter_counts(model),
        "step": history["step"],
        "train_loss": history["train_loss"],
        "gradient_norms": recorder.series,
        "final_test": history["eval"][-1],
        "diverged": history["diverged"],
        "seconds_per_batch": history["seconds_per_batch"],
    }


def write_outputs(settings: dict, folder, test_samples: int, results: dict) -> dict:
    """gradients.json, gradients.png and gradients.md in `folder`."""
    payload = {"run": analysis.run_info(settings), "quantities": QUANTITIES, "test_samples": test_samples,
               "models": results, "summary": summarize(results)}
    analysis.write_json(folder / "gradients.json", payload)
    plot(payload, settings, folder / "gradients.png")
    analysis.write_markdown(folder / "gradients.md", table(payload, settings))
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
            color = analysis.COLORS.get(name)
            axis.plot(result["step"], values, lw=0.5, alpha=0.3, color=color)
            smoothed = analysis.moving_average(values, window)
            axis.plot(result["step"][len(values) - len(smoothed):], smoothed, lw=1.4, color=color, label=name)
        axis.set_yscale("log")
        axis.set(title=f"{quantity}: {description}", ylabel="gradient L2 norm")
        axis.legend(fontsize=8)
    smoothing = f"thin: every batch; thick: mean of {window}" if window > 1 else "every batch"
    for axis in axes[-1]:
        axis.set_xlabel(f"training batch ({smoothing})")
    figure.suptitle(analysis.budget_label(settings), fontsize=9)
    analysis.save_figure(figure, path)


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
        f"{analysis.budget_label(settings)}. Gradient L2 norms of the batch-mean loss, before clipping.\n\n"
        + analysis.markdown_table(header, rows)
        + f"\nTest accuracy after training ({payload['test_samples']} reviews): {accuracies}.\n"
    )
