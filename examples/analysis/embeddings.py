#!/usr/bin/env python
"""Embedding independence (Token2Wave, arXiv 2411.06989): does the Wave Network need pre-trained embeddings?

    python examples/analysis/embeddings.py [--quick] [--data_dir ../shared/data/imdb] [--models a,b,...]

Every model is built at the width of all-MiniLM-L6-v2's word embeddings (384) three times: with random word
embeddings, and with MiniLM's pre-trained word embeddings (BERT uncased vocabulary, the one the tokenizer uses)
frozen or trainable. Only the word-embedding matrix is copied; positions and everything else start random. Each
trains for the same budget (500 batches of 32 IMDB reviews, length 256) and is tested on a fixed sample of 2,000
test reviews. Writes embeddings.json, embeddings.md (accuracy table) and embeddings.png (bar chart).
"""

import sys

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from wave_examples import analysis

EMBEDDINGS = {
    "random": "random (trained)",
    "frozen": "pre-trained, frozen",
    "trainable": "pre-trained, trainable",
}


def extra_arguments(parser):
    parser.add_argument("--embeddings", help=f"comma-separated subset of {','.join(EMBEDDINGS)}")


def main(argv: list[str] | None = None) -> dict:
    settings = analysis.parse_settings("embeddings", __doc__, argv, extra_arguments)
    if isinstance(settings["embeddings"], str):
        settings["embeddings"] = settings["embeddings"].split(",")
    unknown = set(settings["embeddings"]) - set(EMBEDDINGS)
    if unknown:
        raise SystemExit(f"unknown --embeddings {sorted(unknown)}; choose from {list(EMBEDDINGS)}")
    folder = analysis.output_dir(settings)
    data = analysis.AnalysisData(settings, analysis.training_samples(settings), settings["eval_samples"])
    width = analysis.pretrained_word_embeddings(settings["pretrained_embeddings"]).shape[1]
    runs = []
    for name in settings["models"]:
        spec = settings["model_specs"][name]
        for embeddings in settings["embeddings"]:
            label = f"{name}, {embeddings} embeddings"
            model = analysis.build_model(name, settings, data.num_labels, hidden_size=width, embeddings=embeddings)
            history = analysis.train(model, data, settings, spec["learning_rate"], label=label)
            runs.append({
                "model": name,
                "embeddings": embeddings,
                "hidden_size": width,
                "learning_rate": spec["learning_rate"],
                **analysis.parameter_counts(model),
                "test": history["eval"][-1],
                "diverged": history["diverged"],
                "final_train_loss": float(np.mean(history["train_loss"][-max(1, len(history["train_loss"]) // 10):])),
                "seconds_per_batch": history["seconds_per_batch"],
                "train_loss": history["train_loss"],
            })
            del model
    payload = {"run": analysis.run_info(settings), "test_samples": len(data.test), "hidden_size": width, "runs": runs}
    analysis.write_json(folder / "embeddings.json", payload)
    plot(payload, settings, folder / "embeddings.png")
    analysis.write_markdown(folder / "embeddings.md", table(payload, settings))
    return payload


def _grid(payload: dict) -> dict:
    return {(r["model"], r["embeddings"]): r for r in payload["runs"]}


def plot(payload: dict, settings: dict, path):
    grid = _grid(payload)
    models = list(dict.fromkeys(r["model"] for r in payload["runs"]))
    variants = list(dict.fromkeys(r["embeddings"] for r in payload["runs"]))
    figure, axis = plt.subplots(figsize=(8, 4.5))
    bar = 0.8 / len(variants)
    hatches = {"random": "", "frozen": "//", "trainable": ".."}
    for j, variant in enumerate(variants):
        for i, model in enumerate(models):
            accuracy = grid[(model, variant)]["test"]["accuracy"]
            axis.bar(i + (j - (len(variants) - 1) / 2) * bar, accuracy, bar, color=analysis.COLORS.get(model),
                     hatch=hatches.get(variant, ""), edgecolor="black", lw=0.5)
            axis.text(i + (j - (len(variants) - 1) / 2) * bar, accuracy + 0.005, f"{accuracy:.3f}", ha="center",
                      fontsize=7)
    axis.axhline(0.5, color="grey", lw=0.6, ls=":")
    axis.set_xticks(range(len(models)), models)
    lowest = min(r["test"]["accuracy"] for r in payload["runs"])
    axis.set(ylim=(min(0.4, lowest - 0.05), 1.0), ylabel=f"test accuracy ({payload['test_samples']} reviews)",
             title=f"Word embeddings: random vs all-MiniLM-L6-v2 (width {payload['hidden_size']})")
    legend = [Patch(facecolor="white", edgecolor="black", hatch=hatches.get(v, ""), label=EMBEDDINGS[v])
              for v in variants]
    axis.legend(handles=legend, fontsize=8, loc="upper right")
    figure.suptitle(analysis.budget_label(settings), fontsize=9)
    analysis.save_figure(figure, path)


def table(payload: dict, settings: dict) -> str:
    grid = _grid(payload)
    models = list(dict.fromkeys(r["model"] for r in payload["runs"]))
    variants = list(dict.fromkeys(r["embeddings"] for r in payload["runs"]))
    header = [f"model (width {payload['hidden_size']})", "parameters without embeddings"]
    header += [f"test accuracy, {EMBEDDINGS[v]}" for v in variants]
    rows = []
    for model in models:
        first = grid[(model, variants[0])]
        rows.append([model, f"{first['parameters_without_embeddings']:,}"]
                    + [f"{grid[(model, v)]['test']['accuracy']:.4f}" for v in variants])
    return (
        f"{analysis.budget_label(settings)}; test sample of {payload['test_samples']} reviews. Pre-trained word "
        f"embeddings: {settings['pretrained_embeddings']}.\n\n" + analysis.markdown_table(header, rows)
    )


if __name__ == "__main__":
    main(sys.argv[1:])
