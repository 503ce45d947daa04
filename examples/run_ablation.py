#!/usr/bin/env python
"""Run an ablation: one `run_classification.py` training per row, then one table of test results.

    python examples/run_ablation.py configuration/ablations/ablation-imdb.json --data_dir ../shared/data/imdb

The JSON names a training preset, the settings shared by every row (the budget) and the rows (each a set of
overrides). Every row runs as its own `run_classification.py` command, printed and stored with its result, so a
single row can be rerun by hand. Writes `ablation.json` and `ablation.md` to the output folder; rows already
finished there are kept (rerunning continues an interrupted ablation).
"""

import argparse
import json
from pathlib import Path

from wave_examples.runs import printable, run_script, script_command

TRAIN_SCRIPT = "examples/run_classification.py"


def row_command(spec: dict, row: dict, seed: int, output_dir: Path, extra: list[str]) -> list[str]:
    settings = {**spec.get("common", {}), **row.get("args", {}), "seed": seed}
    overrides = [o for o in (spec.get("common", {}).get("config_overrides"), row.get("args", {}).get("config_overrides")) if o]
    if overrides:  # the row's model changes apply on top of the shared ones
        settings["config_overrides"] = merge_overrides(overrides)
    settings["output_dir"] = str(output_dir / f"{row['name']}-seed{seed}")
    return script_command(TRAIN_SCRIPT, row.get("preset", spec["preset"]), settings, extra)  # a row may name its preset


def merge_overrides(overrides: list) -> str | dict:
    """Comma-separated `key=value` strings join with commas; JSON objects (for list values) merge, later keys win."""
    if all(isinstance(o, str) for o in overrides):
        return ",".join(overrides)
    if not all(isinstance(o, dict) for o in overrides):
        raise ValueError(f"config_overrides mixes 'key=value' strings and JSON objects: {overrides}; use one form.")
    return {key: value for o in overrides for key, value in o.items()}


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| row | what changes | seed | validation accuracy | test accuracy | test macro F1 | train time (s) | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: -r["metrics"]["eval_accuracy"]):  # ranked by validation, never by test
        m = r["metrics"]
        lines.append(
            f"| {r['name']} | {r['description']} | {r['seed']} | {m['eval_accuracy']:.4f} | {m['test_accuracy']:.4f} | "
            f"{m['test_f1']:.4f} | {m.get('train_runtime', float('nan')):.0f} | `{r['command']}` |"
        )
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="ablation JSON (preset, common settings, rows)")
    parser.add_argument("--output_dir", default=None, help="default: the spec's output_dir")
    parser.add_argument("--rows", default=None, help="comma-separated row names to run (default: all)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the spec's)")
    args, extra = parser.parse_known_args()  # anything else goes to every training command, e.g. --data_dir

    spec = json.loads(Path(args.spec).read_text())
    output_dir = Path(args.output_dir or spec["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in (args.seeds.split(",") if args.seeds else spec.get("seeds", [42]))]
    wanted = set(args.rows.split(",")) if args.rows else None
    results_path = output_dir / "ablation.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    done = {(r["name"], r["seed"]) for r in results}

    for row in spec["rows"]:
        if wanted is not None and row["name"] not in wanted:
            continue
        for seed in seeds:
            if (row["name"], seed) in done:
                continue
            command = row_command(spec, row, seed, output_dir, extra)
            print(f"[{row['name']} seed {seed}] {printable(command)}", flush=True)
            metrics = run_script(command, output_dir / f"{row['name']}-seed{seed}")
            results.append(
                {"name": row["name"], "description": row.get("description", ""), "seed": seed,
                 "command": printable(command), "metrics": metrics}
            )
            results_path.write_text(json.dumps(results, indent=2))
            print(f"    validation accuracy {metrics['eval_accuracy']:.4f}, test {metrics['test_accuracy']:.4f}", flush=True)

    table = markdown_table(results)
    (output_dir / "ablation.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
