#!/usr/bin/env python
"""Speed and memory of the Wave Network against Transformer baselines, measured interleaved in one process.

    python examples/benchmark.py configuration/benchmark/benchmark-cpu.json            # the paper's setting + length sweep
    python examples/benchmark.py configuration/benchmark/benchmark-quick.json          # tiny models, about a minute
    python examples/benchmark.py --models wave-modulation,bert-base --seq_lengths 128,1024 --device cuda

An optional JSON preset from `configuration/` gives the settings; any `--option` on the command line wins over it
(`--help` lists them: `wave_examples.benchmark.settings`). For every model it measures, after warm-up and as medians
over repeats:

- the training step (forward, loss, backward, AdamW step): seconds and samples per second;
- inference (`torch.inference_mode`, eval mode): sequences per second;
- peak memory, in a fresh process per model (`wave_examples.benchmark.memory`; CPU: `VmHWM` of
  `/proc/self/status`, reset between measurements through `/proc/self/clear_refs`; GPU:
  `torch.cuda.max_memory_allocated`);

at `--batch_size` x `--seq_length` (64 x 128, the paper's setting), then over `--seq_lengths` (the scaling sweep,
at `--sweep_batch_size`). The models take turns inside every repeat (A B C, A B C, ...), so that a drift of the
machine touches all of them alike. A model whose next sweep step is predicted to exceed `--max_step_seconds` (or that
hits its length cap) is skipped from there on, with the reason written into the table (`wave_examples.benchmark.timing`).

The physical limit: the same rounds also time float32 matrix multiplies at the Wave layer's own shapes (forward and
backward), the models' floating-point operations are counted analytically (`wave_examples.flops`), and the report
gives the fraction of the matmul rate the Wave forward pass and training step reach. The target ratios of the issue
are printed, never asserted (`wave_examples.benchmark.report`). Writes `benchmark.json`, `benchmark.md`,
`time_vs_length.png` and `memory_vs_length.png` to `--output_dir`. Method and FLOP formulas: docs/benchmark.md.
"""

import gc
import json
import sys
import time
from pathlib import Path

import torch
import transformers

from wave_examples.benchmark.memory import measure_memory
from wave_examples.benchmark.report import environment, markdown_report, plot_sweep, target_ratios
from wave_examples.benchmark.settings import parse_settings
from wave_examples.benchmark.timing import log, run_main_point, run_sweep


def main(argv: list[str] | None = None) -> dict:
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    transformers.logging.set_verbosity_error()
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    device_name = settings["device"]
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    output_dir = Path(settings["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = {"settings": settings, "environment": environment(device)}

    # 1. The main point: all models in memory, interleaved rounds, with the matmul probe as one more participant.
    report.update(run_main_point(settings, device))

    # 2. The length sweep, with position tables sized for the longest length.
    report["sweep"] = {
        "batch_size": settings["sweep_batch_size"],
        "seq_lengths": settings["seq_lengths"],
        "results": {},
    }
    if settings["seq_lengths"]:
        report["sweep"]["results"], report["sweep"]["models"] = run_sweep(settings["models"], settings, device)
        gc.collect()

    # 3. Peak memory, a fresh process per model, at every point that was timed.
    report["memory"] = {}
    if settings["memory"]:
        main_results = report["main"]["results"]
        sweep_points = {
            name: [[settings["sweep_batch_size"], int(length)] for length, r in points.items() if "train_step_s" in r]
            for name, points in report["sweep"]["results"].items()
        }
        timed_names = [n for n in settings["models"] if "train_step_s" in main_results[n] or sweep_points.get(n)]
        main_point = [settings["batch_size"], settings["seq_length"]]
        report["memory"] = measure_memory(timed_names, settings, device, main_point, sweep_points)

    report["ratios"] = target_ratios(report)
    report["elapsed_s"] = time.perf_counter() - started
    markdown = markdown_report(report) + f"\nTotal benchmark time: {report['elapsed_s']:.0f} s.\n"
    (output_dir / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "benchmark.md").write_text(markdown)
    if settings["seq_lengths"]:
        plot_sweep(report, output_dir)
    print(markdown)
    log(f"Wrote {output_dir}/benchmark.json, benchmark.md and the plots in {report['elapsed_s']:.0f} s.")
    return report


if __name__ == "__main__":
    main()
