"""Peak memory, in a fresh process per model, so that nothing allocated by other models or by earlier measurements
counts. `measure_memory` starts, per model,

    python -m wave_examples.benchmark.memory PLAN.json RESULT.json

which builds the model of the plan, measures its points and writes the peaks to RESULT.json. CPU: `VmHWM` of
`/proc/self/status`, reset between measurements through `/proc/self/clear_refs`; GPU: `torch.cuda.max_memory_allocated`.
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import transformers

from wave_examples.benchmark.models import ModelUnderTest
from wave_examples.benchmark.timing import log


def read_status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(device: torch.device) -> bool:
    """Start a new peak: CUDA statistics, and VmHWM (set back to the current RSS by writing 5 to clear_refs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return read_status_kb("VmHWM") / 1024


def memory_probe(plan: dict) -> dict:
    """Inside the fresh process: the main point, then the sweep points by increasing size (peak reset between)."""
    name, settings, device = plan["model"], plan["settings"], torch.device(plan["device"])
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    result = {"runtime_mb": read_status_kb("VmHWM") / 1024, "peak_reset": True, "points": {}}
    for phase, max_positions, points in (
        ("main", plan["main_positions"], plan["main_points"]),
        ("sweep", plan["sweep_positions"], plan["sweep_points"]),
    ):
        if not points:
            continue
        runner = ModelUnderTest(name, settings, max_positions, device)
        for batch_size, length in sorted(points, key=lambda p: p[0] * p[1]):
            batch = runner.batch(batch_size, length)
            runner.model.eval()
            if settings["compile"]:  # compile outside the measured peak
                runner.inference(batch)
            result["peak_reset"] &= reset_peak(device)
            runner.inference(batch)
            inference_peak = peak_mb(device)
            runner.model.train()
            if settings["compile"]:
                runner.train_step(batch)
            reset_peak(device)
            for _ in range(2):  # the second step holds AdamW's state as well as activations and gradients
                runner.train_step(batch)
            result["points"][f"{phase}:{batch_size}x{length}"] = {
                "inference_mb": inference_peak,
                "train_mb": peak_mb(device),
            }
        runner.release()
        gc.collect()
    return result


def measure_memory(names, settings, device, main_point, sweep_points: dict) -> dict:
    """One fresh probe process per model (`memory_jobs` at a time on CPU); returns its peaks per point.

    Concurrent probes do not disturb each other's numbers: VmHWM and max_memory_allocated are per process.
    """
    pending, running, results = list(enumerate(names)), {}, {}
    jobs = max(1, settings["memory_jobs"] if device.type == "cpu" else 1)  # one GPU: one probe at a time
    with tempfile.TemporaryDirectory(prefix="benchmark-memory-") as folder:
        while pending or running:
            while pending and len(running) < jobs:
                index, name = pending.pop(0)
                plan = {
                    "model": name,
                    "settings": settings,
                    "device": str(device),
                    "main_positions": main_point[1],
                    "main_points": [main_point],
                    "sweep_positions": max(settings["seq_lengths"] or [0]),
                    "sweep_points": sweep_points.get(name, []),
                }
                plan_file, result_file = Path(folder) / f"{index}-plan.json", Path(folder) / f"{index}-result.json"
                plan_file.write_text(json.dumps(plan))
                command = [sys.executable, "-m", "wave_examples.benchmark.memory", str(plan_file), str(result_file)]
                log(f"[memory] fresh process for {name}")
                process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                running[name] = (process, result_file)
            name = next(iter(running))
            process, result_file = running.pop(name)
            stdout, stderr = process.communicate()
            results[name] = _probe_result(process.returncode, result_file, stdout, stderr)
    return {name: results[name] for name in names}


def _probe_result(returncode: int, result_file: Path, stdout: str, stderr: str) -> dict:
    if returncode != 0 or not result_file.is_file():
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"probe failed: {tail[0][:200]}"}
    return json.loads(result_file.read_text())


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        description="One model's peak memory, in this fresh process (started by examples/benchmark.py)."
    )
    parser.add_argument("plan", help="JSON file: model, settings, device, main and sweep points and positions")
    parser.add_argument("result", help="JSON file the peaks are written to")
    args = parser.parse_args(argv)
    transformers.logging.set_verbosity_error()
    result = memory_probe(json.loads(Path(args.plan).read_text()))
    Path(args.result).write_text(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
