#!/usr/bin/env python
"""Train the Wave recipe and the classic baselines on every set of a suite, over several seeds, and tabulate them.

    python examples/run_suite.py configuration/suites/suite-five-sets.json [--seeds 42,43,44] [--sets trec,subj] [--quick]

The JSON names the sets (a data folder and the options that set needs, e.g. `csv_header: false` for AG News), the
models (an example script and its preset: the same preset on every set; a model with `"teacher": NAME` is distilled
from that model's run on the same set and seed) and the seeds. Every (set, model, seed) runs
as its own command, printed and stored with its result, so one run can be repeated by hand; runs already finished
in the output folder are kept (rerunning continues an interrupted suite). Each seed has its own 80/20 split of the
training set. Writes `suite.json` (every run) and `suite.md` (mean test accuracy, its spread over the seeds,
validation accuracy, training and end-to-end seconds and parameters per set and model). A spec with an `inference`
entry also times the saved models of one set and seed with `examples/export_onnx.py`, one after the other on this
machine (PyTorch, ONNX Runtime and its int8, sequences per second), and tabulates each against the first one named.
`--quick`: the suite's `quick` settings (a few texts and steps, one seed): a smoke test.
"""

import argparse
import json
import math
import statistics
from pathlib import Path

from safetensors import safe_open

from wave_examples import repo_path
from wave_examples.runs import printable, run_script, script_command


def parse_arguments(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="suite JSON (sets, models, seeds, quick settings)")
    parser.add_argument("--output_dir", default=None, help="default: the spec's output_dir")
    parser.add_argument("--sets", default=None, help="comma-separated set names to run (default: all)")
    parser.add_argument("--models", default=None, help="comma-separated model names to run (default: all)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the spec's)")
    parser.add_argument("--quick", action="store_true", help="the spec's quick settings, one seed: a smoke test")
    return parser.parse_args(argv)


def load_spec(args) -> tuple[dict, list[dict], list[dict], list[int]]:
    """The spec, and the sets, models and seeds to run (checked against the spec's names)."""
    spec = json.loads(repo_path(args.spec).read_text())
    chosen = {}
    for kind, wanted in (("sets", args.sets), ("models", args.models)):
        names = [entry["name"] for entry in spec[kind]]
        picked = names if wanted is None else wanted.split(",")
        unknown = sorted(set(picked) - set(names))
        if unknown:
            raise ValueError(f"--{kind} names {unknown}, which the suite does not have; it has {names}.")
        chosen[kind] = [entry for entry in spec[kind] if entry["name"] in picked]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else spec["seeds"]
    if args.quick:
        seeds = seeds[:1]
    return spec, chosen["sets"], chosen["models"], seeds


def run_command(spec: dict, data_set: dict, model: dict, seed: int, output_dir: Path, quick: bool) -> list[str]:
    settings = {"data_dir": data_set["data_dir"], **data_set.get("args", {}), **model.get("args", {})}
    if quick:
        settings.update({**spec["quick"].get("all", {}), **spec["quick"].get(model["name"], {})})
    if "teacher" in model:  # a distilled student: the teacher model's run on the same set and seed
        settings["teacher"] = str(output_dir.parent / f"{data_set['name']}-{model['teacher']}-seed{seed}")
    settings.update(seed=seed, output_dir=str(output_dir))
    return script_command(model["script"], model["preset"], settings)


def in_running_order(models: list[dict]) -> list[dict]:
    """The models, teachers before the students that learn from their runs."""
    teachers = {model["teacher"] for model in models if "teacher" in model}
    return sorted(models, key=lambda model: model["name"] not in teachers)


def saved_parameters(run_dir: Path) -> int | None:
    """The parameters of the model a run saved, read from its safetensors header (None: saved in another format)."""
    path = run_dir / "model.safetensors"
    if not path.exists():
        return None
    with safe_open(path, "pt") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())


def summarise(runs: list[dict], sets: list[dict], models: list[dict], output_dir: Path) -> list[dict]:
    """One row per (set, model): mean and spread over the seeds."""
    rows = []
    for data_set in sets:
        for model in models:
            done = [r["metrics"] for r in runs if r["set"] == data_set["name"] and r["model"] == model["name"]]
            if not done:
                continue

            def mean(key):
                return statistics.mean(m[key] for m in done)

            test = [m["test_accuracy"] for m in done]
            first_seed = next(r["seed"] for r in runs if r["set"] == data_set["name"] and r["model"] == model["name"])
            rows.append({
                "set": data_set["name"],
                "model": model["name"],
                "seeds": len(done),
                "test_accuracy": statistics.mean(test),
                "test_accuracy_spread": max(test) - min(test),
                "test_accuracies": test,
                "eval_accuracy": mean("eval_accuracy"),
                "train_seconds": mean("train_runtime"),
                "chosen_fit_seconds": mean("best_fit_runtime") if all("best_fit_runtime" in m for m in done) else None,
                "end_to_end_seconds": mean("end_to_end_seconds"),
                "chosen": sorted({m["best_model"] for m in done if "best_model" in m}),
                "parameters": saved_parameters(output_dir / f"{data_set['name']}-{model['name']}-seed{first_seed}"),
            })
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| set | model | test accuracy, mean (min-max spread) | per seed | validation accuracy | train s "
        "(chosen model alone) | end-to-end s | parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        model = r["model"] + (f" ({', '.join(r['chosen'])})" if r["chosen"] else "")
        per_seed = " / ".join(f"{100 * t:.2f}" for t in r["test_accuracies"])
        train = f"{r['train_seconds']:.1f}" + (f" ({r['chosen_fit_seconds']:.1f})" if r["chosen_fit_seconds"] else "")
        lines.append(
            f"| {r['set']} | {model} | **{100 * r['test_accuracy']:.2f}%** ({100 * r['test_accuracy_spread']:.2f}) | "
            f"{per_seed} | {100 * r['eval_accuracy']:.2f}% | {train} | {r['end_to_end_seconds']:.1f} | "
            f"{'-' if r['parameters'] is None else format(r['parameters'], ',')} |"
        )
    return "\n".join(lines) + "\n"


def difference_table(rows: list[dict], models: list[dict]) -> str:
    """Per set: the first model's mean test accuracy minus each other model's, in points."""
    first, others = models[0]["name"], [m["name"] for m in models[1:]]
    by_key = {(r["set"], r["model"]): r for r in rows}
    lines = [f"| set | {first} minus {' / '.join(others)} (points, mean test accuracy) |", "|---|---|"]
    for data_set in dict.fromkeys(r["set"] for r in rows):
        if (data_set, first) not in by_key:
            continue
        gaps = [
            f"{100 * (by_key[(data_set, first)]['test_accuracy'] - by_key[(data_set, o)]['test_accuracy']):+.2f}"
            for o in others
            if (data_set, o) in by_key
        ]
        lines.append(f"| {data_set} | {' / '.join(gaps)} |")
    return "\n".join(lines) + "\n"


def measure_inference(spec: dict, names: list[str], output_dir: Path, quick: bool, measured: dict) -> dict:
    """`export_onnx.py` on the run of each of `names` on `spec["inference"]`'s set and seed, one after the other:
    sequences per second by backend. Models already in `measured` are kept."""
    inference = spec["inference"]
    seed = spec["seeds"][0] if quick else inference["seed"]
    data_set = next(entry for entry in spec["sets"] if entry["name"] == inference["set"])
    for name in names:
        if name in measured:
            continue
        run_dir = output_dir / f"{data_set['name']}-{name}-seed{seed}"
        if not (run_dir / "model.safetensors").exists():
            raise FileNotFoundError(f"Timing {name} needs its run {run_dir}: run the suite with --sets {data_set['name']} "
                                    f"--seeds {seed} first.")  # fmt: skip
        timing_dir = run_dir.with_name(run_dir.name + "-inference")
        timing = {"quick": "true"} if quick else inference.get("args", {})  # quick: export_onnx's own smoke settings
        settings = {"model_name_or_path": str(run_dir), "data_dir": data_set["data_dir"], **data_set.get("args", {}),
                    **timing, "output_dir": str(timing_dir)}  # fmt: skip
        command = script_command("examples/export_onnx.py", None, settings)
        print(f"[inference / {name}] {printable(command)}", flush=True)
        results = run_script(command, timing_dir, results_name="results.json")
        measured[name] = {
            "set": data_set["name"], "seed": seed, "batch_size": results["batch_size"],
            "seq_length": results["seq_lengths"][0], "threads": results["threads"], "command": printable(command),
            "sequences_per_second": {b: r["sequences_per_second"][str(results["seq_lengths"][0])]
                                     for b, r in results["backends"].items()},
        }  # fmt: skip
    return measured


def inference_table(measured: dict, rows: list[dict], spec: dict) -> str:
    """Sequences per second by backend, and each model's fastest against the first model's fastest."""
    names = [name for name in spec["inference"]["models"] if name in measured]
    backends = list(measured[names[0]]["sequences_per_second"])
    first = measured[names[0]]
    parameters = {r["model"]: r["parameters"] for r in rows if r["set"] == first["set"]}
    lines = [
        f"Inference on {first['set']} (seed {first['seed']}), batch {first['batch_size']}, {first['seq_length']} tokens, "
        f"{first['threads']} threads, sequences per second:",
        "",
        f"| model | parameters | {' | '.join(backends)} | fastest, x {names[0]}'s fastest |",
        "|---|---|" + "---|" * len(backends) + "---|",
    ]
    fastest_first = max(first["sequences_per_second"].values())
    for name in names:
        speeds = measured[name]["sequences_per_second"]
        count = parameters.get(name)
        lines.append(
            f"| {name} | {'-' if count is None else format(count, ',')} | "
            + " | ".join(f"{speeds[b]:,.1f}" for b in backends)
            + f" | {max(speeds.values()) / fastest_first:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_arguments(argv)
    spec, sets, models, seeds = load_spec(args)
    output_dir = Path(args.output_dir or spec["output_dir"] + ("-quick" if args.quick else "")).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    runs_path = output_dir / "suite.json"
    saved_before = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    runs = saved_before.get("runs", [])
    done = {(r["set"], r["model"], r["seed"]) for r in runs}

    for data_set in sets:
        for model in in_running_order(models):
            for seed in seeds:
                if (data_set["name"], model["name"], seed) in done:
                    continue
                run_dir = output_dir / f"{data_set['name']}-{model['name']}-seed{seed}"
                command = run_command(spec, data_set, model, seed, run_dir, args.quick)
                print(f"[{data_set['name']} / {model['name']} / seed {seed}] {printable(command)}", flush=True)
                metrics = run_script(command, run_dir)
                runs.append({"set": data_set["name"], "model": model["name"], "seed": seed,
                             "command": printable(command), "metrics": metrics})
                runs_path.write_text(json.dumps({**saved_before, "runs": runs}, indent=2) + "\n")
                print(f"    test accuracy {metrics['test_accuracy']:.4f}, validation {metrics['eval_accuracy']:.4f}, "
                      f"{metrics['end_to_end_seconds']:.0f} s", flush=True)

    rows = summarise(runs, spec["sets"], spec["models"], output_dir)
    table = markdown_table(rows) + "\n" + difference_table(rows, spec["models"])
    measured = saved_before.get("inference", {})
    if "inference" in spec and spec["inference"]["set"] in {data_set["name"] for data_set in sets}:
        names = [name for name in spec["inference"]["models"] if name in {model["name"] for model in models}]
        measured = measure_inference(spec, names, output_dir, args.quick, measured)
    if measured:
        table += "\n" + inference_table(measured, rows, spec)
    runs_path.write_text(json.dumps({"runs": runs, "summary": rows, "inference": measured}, indent=2) + "\n")
    (output_dir / "suite.md").write_text(table)
    print(table)
    return rows


if __name__ == "__main__":
    main()
