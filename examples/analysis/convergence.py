#!/usr/bin/env python
"""Convergence (Token2Wave, arXiv 2411.06989): test accuracy and loss against training batches.

    python examples/analysis/convergence.py [--quick] [--data_dir ../shared/data/imdb] [--models a,b,...]

Every model of the preset (Wave modulation and interference, a randomly initialised one-layer BERT, pre-trained
all-MiniLM-L6-v2 fine-tuned) trains on the same IMDB batches (500 of 32 texts, length 256) and is evaluated on
the same fixed test sample (500 reviews) before training and every 10 batches. Writes to the output folder:
convergence.json (every series and the settings), convergence.md (a table) and convergence.png (accuracy and
loss against batches).

With --record_gradients, the same training also records the gradient norms of gradients.py (its hooks change no
number of the training) and writes gradients.json / .md / .png to the same folder: one training run for both
analyses instead of two.
"""

import sys

import matplotlib.pyplot as plt

from wave_examples import analysis
from wave_examples.analysis_gradients import GradientRecorder, model_result, write_outputs

BUDGET_FRACTIONS = (0.1, 0.2, 0.5, 1.0)  # table columns: test accuracy after this share of the batches


def main(argv: list[str] | None = None) -> dict:
    settings = analysis.parse_settings("convergence", __doc__, argv, extra_arguments)
    folder = analysis.output_dir(settings)
    data = analysis.AnalysisData(settings, analysis.training_samples(settings), settings["eval_samples"])
    results, gradient_results = {}, {}
    for name in settings["models"]:
        spec = settings["model_specs"][name]
        model = analysis.build_model(name, settings, data.num_labels)
        recorders = [GradientRecorder(model)] if settings["record_gradients"] else []
        history = analysis.train(model, data, settings, spec["learning_rate"], callbacks=recorders, label=name)
        results[name] = {"learning_rate": spec["learning_rate"], **analysis.parameter_counts(model), **history}
        if recorders:
            gradient_results[name] = model_result(spec, model, history, recorders[0])
        del model
    payload = {"run": analysis.run_info(settings), "test_samples": len(data.test), "models": results}
    analysis.write_json(folder / "convergence.json", payload)
    plot(payload, settings, folder / "convergence.png")
    analysis.write_markdown(folder / "convergence.md", table(payload, settings))
    if gradient_results:
        payload["gradients"] = write_outputs(settings, folder, len(data.test), gradient_results)
    return payload


def extra_arguments(parser):
    parser.add_argument(
        "--record_gradients",
        action="store_true",
        help="also write the outputs of gradients.py, from this same training run",
    )


def plot(payload: dict, settings: dict, path):
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in payload["models"].items():
        color = analysis.COLORS.get(name)
        steps = [e["step"] for e in result["eval"]]
        accuracy_axis.plot(steps, [e["accuracy"] for e in result["eval"]], "-o", ms=2.5, color=color, label=name)
        loss_axis.plot(steps, [e["loss"] for e in result["eval"]], "-o", ms=2.5, color=color, label=f"{name} (test)")
        window = max(1, settings["eval_every"])
        smoothed = analysis.moving_average(result["train_loss"], window)
        loss_axis.plot(result["step"][len(result["step"]) - len(smoothed):], smoothed, "--", lw=0.8, color=color,
                       alpha=0.7, label=f"{name} (train, mean of {window})")
    accuracy_axis.axhline(0.5, color="grey", lw=0.6, ls=":")
    accuracy_axis.set(xlabel="training batches", ylabel=f"test accuracy ({payload['test_samples']} reviews)",
                      title="Test accuracy")
    loss_axis.set(xlabel="training batches", ylabel="cross-entropy", title="Loss")
    accuracy_axis.legend(fontsize=8)
    loss_axis.legend(fontsize=7)
    figure.suptitle(analysis.budget_label(settings), fontsize=9)
    analysis.save_figure(figure, path)


def accuracy_at(result: dict, step: int) -> float:
    """Test accuracy at the evaluation closest to `step` (not after it)."""
    done = [e for e in result["eval"] if e["step"] <= step]
    return done[-1]["accuracy"] if done else float("nan")


def table(payload: dict, settings: dict) -> str:
    every = max(1, settings["eval_every"])  # snap to evaluated batches
    steps = sorted({max(every, round(f * settings["max_steps"] / every) * every) for f in BUDGET_FRACTIONS})
    header = ["model", "parameters (without embeddings)", "learning rate"]
    header += [f"test accuracy, batch {s}" for s in steps] + ["best (batch)", "final test loss", "s / batch"]
    rows = []
    for name, result in payload["models"].items():
        best = max(result["eval"], key=lambda e: e["accuracy"])
        rows.append(
            [name, f"{result['parameters']:,} ({result['parameters_without_embeddings']:,})", result["learning_rate"]]
            + [f"{accuracy_at(result, s):.4f}" for s in steps]
            + [f"{best['accuracy']:.4f} ({best['step']})", f"{result['eval'][-1]['loss']:.4f}",
               f"{result['seconds_per_batch']:.2f}"]
        )
    caption = f"{analysis.budget_label(settings)}; test sample of {payload['test_samples']} reviews."
    return f"{caption}\n\n" + analysis.markdown_table(header, rows)


if __name__ == "__main__":
    main(sys.argv[1:])
