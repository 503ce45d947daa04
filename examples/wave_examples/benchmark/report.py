"""What a benchmark run reports: the machine, the ratios against the issue's targets (reported, never asserted),
`benchmark.md` (the tables, also printed) and the plots `time_vs_length.png` and `memory_vs_length.png`."""

import math
import os
import platform
from pathlib import Path

import torch
import transformers


def environment(device: torch.device) -> dict:
    cpu_name = platform.processor() or platform.machine()
    try:
        cpu_name = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {cpu_name} ({os.cpu_count()} cores)"
    return {
        "device": device.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def target_ratios(report: dict) -> list[dict]:
    """Each target of the issue as a ratio of two numbers measured in this run, per Wave model."""
    main, sweep, memory = report["main"]["results"], report["sweep"]["results"], report["memory"]
    main_key = f"main:{report['main']['batch_size']}x{report['main']['seq_length']}"
    wave_names = [n for n, m in report["models"].items() if m["model_type"] == "wave"]
    cpu = report["environment"]["device"] == "cpu"
    rows = []

    def add(what, wave, reference, numerator, denominator, op, target, note=""):
        if numerator is None or denominator is None or not denominator:
            return
        value = numerator / denominator
        met = value <= target if op == "<=" else value >= target
        rows.append({"what": what, "model": wave, "reference": reference, "numerator": numerator,
                     "denominator": denominator, "value": value, "op": op, "target": target, "met": met,
                     "note": note})  # fmt: skip

    def main_train(name):
        r = main.get(name, {})
        return r["train_step_s"]["median"] if "train_step_s" in r else None

    def main_memory(name, key):
        point = memory.get(name, {}).get("points", {}).get(main_key)
        if point is None:
            return None
        return point["train_mb"] - (memory[name]["runtime_mb"] if key == "above_runtime" else 0)

    for wave in wave_names:
        add("training step time / BERT-base size", wave, "bert-base", main_train(wave), main_train("bert-base"),
            "<=", 1 / 40)  # fmt: skip
        add("training step time / 1-layer Transformer", wave, "transformer-1layer", main_train(wave),
            main_train("transformer-1layer"), "<=", 1 / 3)  # fmt: skip
        add("peak training memory / BERT-base size", wave, "bert-base", main_memory(wave, "raw"),
            main_memory("bert-base", "raw"), "<=", 0.10,
            "whole-process VmHWM" if cpu else "max_memory_allocated")  # fmt: skip
        if cpu:
            add("peak training memory above runtime / BERT-base size", wave, "bert-base",
                main_memory(wave, "above_runtime"), main_memory("bert-base", "above_runtime"), "<=", 0.10,
                "VmHWM minus the probe's VmHWM after its imports")  # fmt: skip
        limit = report["physical_limit"].get(wave)
        if limit:
            add("forward GFLOP/s / forward matmul GFLOP/s", wave, "matmul", limit["inference_gflops_per_s"],
                limit["matmul_forward_gflops_per_s"], ">=", 0.60)  # fmt: skip
            add("training step GFLOP/s / forward+backward matmul GFLOP/s", wave, "matmul", limit["train_gflops_per_s"],
                limit["matmul_train_gflops_per_s"], ">=", 0.60,
                "no target in the issue; the forward target, for reference")  # fmt: skip
        measured = {
            int(length): r["train_step_s"]["median"] for length, r in sweep.get(wave, {}).items() if "train_step_s" in r
        }
        if len(measured) >= 2:
            high = max(measured)
            low = high // 8 if high // 8 in measured else min(measured)
            add(f"training step time at {high} / at {low} tokens", wave, f"{low} tokens", measured[high],
                measured[low], "<=", 1.125 * high / low,
                f"batch {report['sweep']['batch_size']}; linear scaling gives {high // low}")  # fmt: skip
    return rows


def fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) >= 1000 or value == 0):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def millions(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 100_000 else f"{count / 1e3:.1f}K"


def table_row(cells) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def markdown_report(report: dict) -> str:
    env, settings, main, models = report["environment"], report["settings"], report["main"], report["models"]
    memory = report["memory"]
    main_key = f"main:{main['batch_size']}x{main['seq_length']}"
    unit = "peak RSS (MB)" if env["device"] == "cpu" else "max allocated (MB)"
    precision = settings["dtype"] + (" (autocast)" if settings["dtype"] == "bfloat16" else "")
    precision += ", torch.compile" if settings["compile"] else ""
    quick = ", QUICK (tiny models: the numbers only exercise the code)" if settings["quick"] else ""
    lines = [
        "# Wave Network benchmark",
        "",
        f"{env['device_name']}, {env['threads']} threads, torch {env['torch']}, transformers {env['transformers']}, "
        f"{precision}{quick}. Medians over {settings['repeats']} interleaved repeats "
        f"after {settings['warmup']} warm-up round(s).",
        "",
        f"## Batch {main['batch_size']}, length {main['seq_length']}",
        "",
        table_row(["model", "parameters (non-embedding)", "train step (s)", "min-max", "train samples/s",
                   "inference seq/s", f"train {unit}", f"inference {unit}", f"epoch of {settings['epoch_size']:,} (s)",
                   "train GFLOP/s"]),
        "|---" * 10 + "|",
    ]  # fmt: skip
    for name, result in main["results"].items():
        params = models[name]["parameters"]
        size = f"{millions(params['total'])} ({millions(params['non_embedding'])})"
        if "skipped" in result:
            lines.append(table_row([models[name]["label"], size, result["skipped"]] + [""] * 7))
            continue
        point = memory.get(name, {}).get("points", {}).get(main_key, {})
        train = result["train_step_s"]
        epoch = report["epoch"].get(name, {}).get("epoch_s", result["epoch_s_from_median"])
        lines.append(table_row([
            models[name]["label"], size, f"{train['median']:.4g}", f"{train['min']:.3g}-{train['max']:.3g}",
            fmt(result["train_samples_per_s"]), fmt(result["inference_sequences_per_s"]), fmt(point.get("train_mb")),
            fmt(point.get("inference_mb")), fmt(epoch), fmt(result["train_gflops_per_s"]),
        ]))  # fmt: skip
    runtimes = [m["runtime_mb"] for m in memory.values() if "runtime_mb" in m]
    if env["device"] == "cpu" and runtimes:
        lines += ["", f"Peak RSS includes the Python + torch runtime, {min(runtimes):.0f}-{max(runtimes):.0f} MB "
                  "(VmHWM of the probe process right after its imports)."]  # fmt: skip
    steps = math.ceil(settings["epoch_size"] / main["batch_size"])
    source = f"{settings['epoch_steps']} consecutive steps on fresh batches" if report["epoch"] else "the median step"
    lines += [f"Epoch time: {steps} steps x {source}."]

    if report["physical_limit"]:
        lines += [
            "",
            "## Physical limit: float32 matrix multiply at the Wave layer's shapes",
            "",
            table_row(["model", "matmul forward (GFLOP/s)", "forward achieved (GFLOP/s)", "fraction",
                       "matmul fwd+bwd (GFLOP/s)", "training step achieved (GFLOP/s)", "fraction",
                       "matmul-only step (s)", "measured step (s)"]),
            "|---" * 9 + "|",
        ]  # fmt: skip
        for name, limit in report["physical_limit"].items():
            lines.append(table_row([
                models[name]["label"], fmt(limit["matmul_forward_gflops_per_s"]), fmt(limit["inference_gflops_per_s"]),
                f"{limit['forward_fraction']:.0%}", fmt(limit["matmul_train_gflops_per_s"]),
                fmt(limit["train_gflops_per_s"]), f"{limit['train_fraction']:.0%}",
                f"{limit['matmul_train_seconds']:.4g}", f"{limit['train_step_s']:.4g}",
            ]))  # fmt: skip
        lines += ["", "| shape (m x k x n) | product | GFLOP/s |", "|---|---|---|"]
        for shape in main["matmul"]["shapes"]:
            lines.append(table_row([f"{shape['m']} x {shape['k']} x {shape['n']}", shape["name"],
                                    fmt(shape["gflops_per_s"])]))  # fmt: skip

    if report["ratios"]:
        lines += ["", "## Targets (measured in this run, reported, not asserted)", "",
                  "| model | ratio | value | target | met | note |", "|---|---|---|---|---|---|"]  # fmt: skip
        for row in report["ratios"]:
            target, met = f"{row['op']} {row['target']:.4g}", "yes" if row["met"] else "no"
            lines.append(table_row([models[row["model"]]["label"], row["what"], f"{row['value']:.4g}", target, met,
                                    row["note"]]))  # fmt: skip

    sweep = report["sweep"]
    if sweep["seq_lengths"]:
        lines += ["", f"## Length sweep, batch {sweep['batch_size']} (train step s / inference s / train {unit})", "",
                  table_row(["model"] + sweep["seq_lengths"]),
                  "|---" * (1 + len(sweep["seq_lengths"])) + "|"]  # fmt: skip
        for name, points in sweep["results"].items():
            cells = [models[name]["label"]]
            for length in sweep["seq_lengths"]:
                r = points.get(str(length), {})
                if "train_step_s" not in r:
                    cells.append(r.get("skipped", "-"))
                    continue
                mem = memory.get(name, {}).get("points", {}).get(f"sweep:{sweep['batch_size']}x{length}", {})
                cells.append(f"{r['train_step_s']['median']:.3g} / {r['inference_s']['median']:.3g} / "
                             f"{fmt(mem.get('train_mb'))}")  # fmt: skip
            lines.append(table_row(cells))
    errors = {n: m["error"] for n, m in memory.items() if "error" in m}
    if errors:
        lines += ["", "Memory probes that failed: " + "; ".join(f"{n}: {e}" for n, e in errors.items())]
    return "\n".join(lines) + "\n"


def plot_sweep(report: dict, output_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep, memory, models = report["sweep"], report["memory"], report["models"]
    cpu = report["environment"]["device"] == "cpu"
    written = []

    def series(name, getter):
        xs, ys = [], []
        for length in sweep["seq_lengths"]:
            value = getter(name, length)
            if value is not None:
                xs.append(length)
                ys.append(value)
        return xs, ys

    def time_of(key):
        def get(name, length):
            r = sweep["results"].get(name, {}).get(str(length), {})
            return r[key]["median"] if key in r else None

        return get

    def memory_of(above_runtime):
        def get(name, length):
            probe = memory.get(name, {})
            point = probe.get("points", {}).get(f"sweep:{sweep['batch_size']}x{length}")
            if point is None:
                return None
            return point["train_mb"] - (probe["runtime_mb"] if above_runtime else 0)

        return get

    panels = {
        "time_vs_length.png": [
            ("training step (s)", time_of("train_step_s")),
            ("inference pass (s)", time_of("inference_s")),
        ],
        "memory_vs_length.png": [(("peak RSS (MB)" if cpu else "max allocated (MB)"), memory_of(False))]
        + ([("peak RSS above runtime (MB)", memory_of(True))] if cpu else []),
    }
    for filename, axes_spec in panels.items():
        figure, axes = plt.subplots(1, len(axes_spec), figsize=(6 * len(axes_spec), 4.5), squeeze=False)
        for axis, (ylabel, getter) in zip(axes[0], axes_spec, strict=True):
            for name in sweep["results"]:
                xs, ys = series(name, getter)
                if xs:
                    axis.plot(xs, ys, marker="o", label=models[name]["label"])
            reference = next((series(n, getter) for n in sweep["results"] if series(n, getter)[0]), None)
            if reference and "time" in filename:  # slopes 1 and 2 through the first measured point
                x0, y0, lengths = reference[0][0], reference[1][0], sweep["seq_lengths"]
                axis.plot(lengths, [y0 * (x / x0) for x in lengths], ":", color="gray", label="linear")
                axis.plot(lengths, [y0 * (x / x0) ** 2 for x in lengths], "--", color="lightgray", label="quadratic")
            axis.set_xscale("log", base=2)
            axis.set_yscale("log")
            axis.set_xlabel(f"sequence length (batch {sweep['batch_size']})")
            axis.set_ylabel(ylabel)
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8)
        figure.suptitle(f"{report['environment']['device_name']}, {report['settings']['dtype']}")
        figure.tight_layout()
        figure.savefig(output_dir / filename, dpi=120)
        plt.close(figure)
        written.append(filename)
    return written
