#!/usr/bin/env python
"""Test accuracy against training seconds and end-to-end seconds: the Wave recipe at several budgets and the linear
baseline, side by side, one run after the other on the same machine.

    python examples/time_to_accuracy.py configuration/benchmark/time-to-accuracy.json [--quick]

The JSON names the data, the seed, the Wave recipe's preset and its budgets (each a set of options, e.g. how many
updates) and the linear baseline's preset. Every point is its own command (`run_classification.py` or
`run_linear_baseline.py`), run from the repository root, printed and stored with its result. Training seconds are
what the script reports (`train_runtime`: Trainer's training loop; for the linear baseline, vectorising and every
fit of its grid, and the chosen model's fit alone beside it); end-to-end seconds are the command's wall-clock time,
start-up and evaluation included. Writes `time_to_accuracy.json`, `.md` (the table) and `.png` (the plot).
"""

import argparse
import json
from pathlib import Path

from wave_examples import repo_path
from wave_examples.runs import printable, run_script, script_command


def parse_arguments(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="benchmark JSON (data, seed, wave budgets, linear preset, quick settings)")
    parser.add_argument("--output_dir", default=None, help="default: the spec's output_dir")
    parser.add_argument("--quick", action="store_true", help="the spec's quick settings: a smoke test")
    return parser.parse_args(argv)


def point_commands(spec: dict, output_dir: Path, quick: bool) -> list[dict]:
    """One command per point: every Wave budget, then the linear baseline."""
    common = {"data_dir": spec["data_dir"], **spec.get("data_args", {}), "seed": spec["seed"]}
    quick_settings = spec.get("quick", {}) if quick else {}
    points = []
    for budget in spec["wave"]["budgets"]:
        settings = {**common, **budget["args"], **quick_settings.get("wave", {})}
        settings["output_dir"] = str(output_dir / ("wave-" + "-".join(budget["name"].split()[:2])))  # "wave-79-updates"
        command = script_command("examples/run_classification.py", spec["wave"]["preset"], settings)
        points.append({"model": "wave", "budget": budget["name"], "command": command})
    settings = {**common, **quick_settings.get("linear", {}), "output_dir": str(output_dir / "linear")}
    command = script_command("examples/run_linear_baseline.py", spec["linear"]["preset"], settings)
    points.append({"model": "linear", "budget": "grid on validation", "command": command})
    return points


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| model | budget | validation accuracy | test accuracy | training s | end-to-end s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        train = f"{r['train_seconds']:.1f}"
        if r.get("chosen_fit_seconds") is not None:
            train += f" (chosen model's fit: {r['chosen_fit_seconds']:.1f})"
        lines.append(
            f"| {r['model']} | {r['budget']} | {100 * r['eval_accuracy']:.2f}% | {100 * r['test_accuracy']:.2f}% | "
            f"{train} | {r['end_to_end_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, key, label in ((axes[0], "train_seconds", "training s"), (axes[1], "end_to_end_seconds", "end-to-end s")):
        for model, style in (("wave", "o-"), ("linear", "s")):
            chosen = sorted((r for r in rows if r["model"] == model), key=lambda r: r[key])
            axis.plot([r[key] for r in chosen], [100 * r["test_accuracy"] for r in chosen], style, label=model)
            for r in chosen:
                axis.annotate(r["budget"], (r[key], 100 * r["test_accuracy"]), fontsize=7, xytext=(3, 3),
                              textcoords="offset points")
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_arguments(argv)
    spec = json.loads(repo_path(args.spec).read_text())
    output_dir = Path(args.output_dir or spec["output_dir"])
    rows = []
    for point in point_commands(spec, output_dir, args.quick):
        print(f"{point['model']} ({point['budget']}): {printable(point['command'])}", flush=True)
        metrics = run_script(point["command"], Path(point["command"][point["command"].index("--output_dir") + 1]))
        rows.append({
            "model": point["model"],
            "budget": point["budget"],
            "eval_accuracy": metrics["eval_accuracy"],
            "test_accuracy": metrics["test_accuracy"],
            "train_seconds": metrics["train_runtime"],
            "chosen_fit_seconds": metrics.get("best_fit_runtime"),
            "end_to_end_seconds": metrics["end_to_end_seconds"],
            "command": printable(point["command"]),
        })  # fmt: skip
        print(f"    test accuracy {metrics['test_accuracy']:.4f}, {metrics['train_runtime']:.1f} s training, "
              f"{metrics['end_to_end_seconds']:.1f} s end to end", flush=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    (output_dir / "time_to_accuracy.md").write_text(table)
    (output_dir / "time_to_accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, output_dir / "time_to_accuracy.png")
    print(table)
    return rows


if __name__ == "__main__":
    main()
