#!/usr/bin/env python
"""Complexity (Token2Wave, arXiv 2411.06989): FLOPs and activation memory of Wave and Transformer layers as
formulas in n (length), d (width) and L (layers), checked against measurements over a sequence-length sweep.

    python examples/analysis/complexity.py [--quick] [--lengths 128,256,...] [--layers L]

docs/complexity.md derives the formulas implemented in `formulas()`. For every variant and length n, a stack of
L layers runs on B random texts of n tokens (width d = 768, heads of 64, FFN width m = 4d where there is one):

- FLOPs: matrix-multiply FLOPs of one forward pass, counted by `torch.utils.flop_counter.FlopCounterMode`;
- element-wise work: elements written by the other arithmetic operators of the forward pass (not views, not
  layout copies), counted by a `TorchDispatchMode`;
- activation memory: bytes of the tensors autograd keeps for the backward pass of a training-mode forward
  (`torch.autograd.graph.saved_tensors_hooks`; each storage once; parameters excluded);
- time: wall time of an inference forward pass (the fastest of `repeats`) (eval mode, no gradient), compared with
  a * FLOPs + b * elements, where a and b (the machine's cost per FLOP and per element) are fitted once, jointly
  over all variants and lengths.

Writes complexity.json, complexity.md (formula vs measurement per variant and length) and complexity.png.
"""

import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig
from transformers.models.bert.modeling_bert import BertLayer

from modeling_wave.modeling_wave import WaveLayer
from wave_examples import flops
from wave_examples.analysis import (
    markdown_table,
    output_dir,
    parse_settings,
    repo_path,
    resize_config,
    run_info,
    save_figure,
    write_json,
    write_markdown,
)

# What is measured. `ffn`: feed-forward width as a multiple of d (0: none, as in the Wave presets).
# The Wave formulas are derived for the autograd reference of the wave ("eager"); "wave-modulation-fused" is the
# default `WaveFusedFunction`, which keeps fewer activations.
VARIANTS = {
    "wave-modulation": {"kind": "wave", "wave_mode": "modulation", "ffn": 0, "implementation": "eager"},
    "wave-interference": {"kind": "wave", "wave_mode": "interference", "ffn": 0, "implementation": "eager"},
    "wave-modulation-ffn": {"kind": "wave", "wave_mode": "modulation", "ffn": 4, "implementation": "eager"},
    "wave-modulation-fused": {"kind": "wave", "wave_mode": "modulation", "ffn": 0, "implementation": "fused"},
    # BERT's layer as configured (attention dropout 0.1): eager attention; SDPA in training uses the same math.
    "transformer": {"kind": "bert", "attention": "eager", "attention_dropout": 0.1, "ffn": 4},
    # SDPA without attention dropout runs PyTorch's fused (flash) CPU kernel: no n x n tensor is kept.
    "transformer-flash": {"kind": "bert", "attention": "sdpa", "attention_dropout": 0.0, "ffn": 4},
}
STYLES = {
    "wave-modulation": ("tab:blue", "o"),
    "wave-interference": ("tab:orange", "s"),
    "wave-modulation-ffn": ("tab:cyan", "D"),
    "wave-modulation-fused": ("tab:purple", "x"),
    "transformer": ("tab:green", "^"),
    "transformer-flash": ("tab:olive", "v"),
}
FLOAT_BYTES = 4  # float32
# Operators left out of the element count: views (write nothing), layout copies (concatenation, the copies that
# split and merge attention heads, which depend on batch size and head count) and matrix multiplies (FLOPs).
FREE_OPS = {"view", "_unsafe_view", "t", "transpose", "expand", "split", "permute", "unsqueeze", "squeeze",
            "slice", "select", "detach", "alias", "as_strided", "reshape", "chunk", "unbind",
            "clone", "contiguous", "copy_", "_to_copy", "cat"}
MATMUL_OPS = {"addmm", "mm", "bmm", "baddbmm", "matmul", "linear"}


def formulas(variant: str, n: int, d: int, h: int, L: int, B: int = 1) -> dict:
    """docs/complexity.md, for B texts of n tokens through L layers of width d (h heads, FFN width m), from the
    FLOP and activation model the benchmark uses too (`wave_examples.flops`).

    flops: multiply-add = 2 FLOPs, matrix multiplies of the forward pass; elements: written by the other
    operators of an inference forward pass; memory: float32 bytes kept for backward by a training forward pass.
    """
    spec = VARIANTS[variant]
    m = spec["ffn"] * d
    if spec["kind"] == "wave":
        layer = flops.wave_layer(B, n, d, m, spec["wave_mode"], implementation=spec["implementation"])
    else:
        layer = flops.bert_layer(B, n, d, h, m, spec["attention"], spec["attention_dropout"])
    return {
        "flops": L * sum(layer["matmul"].values()),
        "elements": L * layer["elements_written"],
        "memory_bytes": FLOAT_BYTES * (L * layer["saved_floats"] + layer["saved_floats_per_model"]),
    }


def build_layers(variant: str, d: int, L: int, seed: int) -> list[torch.nn.Module]:
    spec = VARIANTS[variant]
    torch.manual_seed(seed)
    if spec["kind"] == "wave":
        config = AutoConfig.from_pretrained(str(repo_path("configuration/models/wave-modulation-base.json")))
        config.hidden_size, config.wave_mode, config.intermediate_size = d, spec["wave_mode"], spec["ffn"] * d
        config.wave_implementation = spec["implementation"]
        return [WaveLayer(config) for _ in range(L)]
    config = AutoConfig.from_pretrained(str(repo_path("configuration/models/analysis-bert-1layer.json")))
    resize_config(config, d)
    config.intermediate_size = spec["ffn"] * d
    config.attention_probs_dropout_prob = spec["attention_dropout"]
    config._attn_implementation = spec["attention"]
    return [BertLayer(config) for _ in range(L)]


def forward(layers, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x, mask) if isinstance(layer, WaveLayer) else layer(x)
    return x


class ElementCounter(TorchDispatchMode):
    """Counts the elements written by operators that are neither views, layout copies nor matrix multiplies."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in FREE_OPS and name not in MATMUL_OPS:
            outputs = out if isinstance(out, (tuple, list)) else [out]
            self.elements += sum(o.numel() for o in outputs if isinstance(o, torch.Tensor))
        return out


def saved_activation_bytes(layers, x: torch.Tensor, mask: torch.Tensor) -> int:
    """Bytes autograd keeps for backward in a training-mode forward pass (each storage once, no parameters)."""
    parameters = {p.untyped_storage().data_ptr() for layer in layers for p in layer.parameters()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    for layer in layers:
        layer.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward(layers, x.clone().requires_grad_(True), mask)
    return sum(storages.values())


def measure(variant: str, n: int, settings: dict) -> dict:
    d, L, B = settings["hidden_size"], settings["layers"], settings["batch_size"]
    layers = build_layers(variant, d, L, settings["seed"])
    x, mask = torch.randn(B, n, d), torch.ones(B, n, 1)
    result = {"memory_bytes": saved_activation_bytes(layers, x, mask)}
    for layer in layers:
        layer.eval()
    with torch.no_grad():
        counter, flop_counter = ElementCounter(), FlopCounterMode(display=False)
        with counter, flop_counter:
            forward(layers, x, mask)
        # PyTorch's flop counter has no formula for the fused CPU attention kernel: its FLOPs are not counted.
        result["flops"] = None if VARIANTS[variant].get("attention") == "sdpa" else flop_counter.get_total_flops()
        result["elements"] = counter.elements
        forward(layers, x, mask)  # warm-up
        times = []
        for _ in range(settings["repeats"]):
            started = time.perf_counter()
            forward(layers, x, mask)
            times.append(time.perf_counter() - started)
    result["seconds"] = min(times)  # as timeit: the fastest run is the one least disturbed by other processes
    result["seconds_all"] = times
    return result


def fit_costs(rows: list[dict]) -> dict:
    """Seconds per FLOP, per element and per layer call (fixed overhead), all >= 0, by least squares on the
    relative error over every measurement: time = per_flop * FLOPs + per_element * elements + per_layer * L."""
    columns = ["per_flop", "per_element", "per_layer"]
    design = np.array([[r["formula"]["flops"], r["formula"]["elements"], r["layers"]] for r in rows], dtype=float)
    seconds = np.array([r["measured"]["seconds"] for r in rows])
    kept = list(range(len(columns)))
    while True:  # drop a term whose best fit is negative (a cost cannot be)
        solution, *_ = np.linalg.lstsq(design[:, kept] / seconds[:, None], np.ones(len(rows)), rcond=None)
        if (solution >= 0).all() or len(kept) == 1:
            break
        kept.pop(int(np.argmin(solution)))
    costs = dict.fromkeys(columns, 0.0)
    costs.update({columns[k]: max(0.0, float(v)) for k, v in zip(kept, solution)})
    return costs


def extra_arguments(parser):
    parser.add_argument("--lengths", help="comma-separated sequence lengths n")
    parser.add_argument("--hidden_size", type=int, help="width d")
    parser.add_argument("--layers", type=int, help="layers L in each measured stack")
    parser.add_argument("--batch_size", type=int, help="texts B per forward pass")
    parser.add_argument("--repeats", type=int, help="timed forward passes per point (the fastest counts)")
    parser.add_argument("--variants", help=f"comma-separated subset of {','.join(VARIANTS)}")


def main(argv: list[str] | None = None) -> dict:
    settings = parse_settings("complexity", __doc__, argv, extra_arguments)
    for key, cast in (("lengths", int), ("variants", str)):
        if isinstance(settings[key], str):
            settings[key] = [cast(v) for v in settings[key].split(",")]
    unknown = set(settings["variants"]) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown --variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    folder = output_dir(settings)
    d, L, B = settings["hidden_size"], settings["layers"], settings["batch_size"]
    heads = max(1, d // 64)
    rows = []
    for n in settings["lengths"]:
        for variant in settings["variants"]:
            measured = measure(variant, n, settings)
            formula = formulas(variant, n, d, heads, L, B)
            rows.append({"variant": variant, "n": n, "layers": L, "formula": formula, "measured": measured})
            print(f"{variant:20s} n={n:5d}: {measured['seconds'] * 1e3:9.2f} ms, activations "
                  f"{measured['memory_bytes'] / 2**20:9.2f} MiB (formula {formula['memory_bytes'] / 2**20:9.2f})",
                  flush=True)
    costs = fit_costs(rows)
    for row in rows:
        row["predicted_seconds"] = (costs["per_flop"] * row["formula"]["flops"]
                                    + costs["per_element"] * row["formula"]["elements"] + costs["per_layer"] * L)
    payload = {
        "run": run_info(settings),
        "d": d, "heads": heads, "layers": L, "batch_size": B,
        "fitted": {"gflops_per_second": 1e-9 / costs["per_flop"] if costs["per_flop"] else None,
                   "gelements_per_second": 1e-9 / costs["per_element"] if costs["per_element"] else None,
                   "ms_per_layer_call": 1e3 * costs["per_layer"]},
        "rows": rows,
    }
    payload["checks"] = checks(rows)
    write_json(folder / "complexity.json", payload)
    plot(payload, settings, folder / "complexity.png")
    write_markdown(folder / "complexity.md", table(payload, settings))
    return payload


def checks(rows: list[dict]) -> dict:
    """How far the counts are from the formulas. FLOPs and activation bytes must be equal (an empty mismatch
    list); element counts follow the implementation's exact operator list, so they are reported as a ratio."""
    mismatches = []
    for row in rows:
        for key in ("flops", "memory_bytes"):
            measured = row["measured"][key]
            if measured is not None and measured != row["formula"][key]:
                mismatches.append(
                    f"{row['variant']} n={row['n']} {key}: formula {row['formula'][key]}, measured {measured}"
                )
    element_ratio = [row["measured"]["elements"] / row["formula"]["elements"] for row in rows]
    time_ratio = [row["measured"]["seconds"] / row["predicted_seconds"] for row in rows]
    return {
        "count_mismatches": mismatches,
        "elements_counted_over_formula": [min(element_ratio), max(element_ratio)],
        "time_measured_over_predicted": [min(time_ratio), max(time_ratio)],
    }


def plot(payload: dict, settings: dict, path):
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    variants = list(dict.fromkeys(r["variant"] for r in payload["rows"]))
    for variant in variants:
        rows = [r for r in payload["rows"] if r["variant"] == variant]
        n = [r["n"] for r in rows]
        color, marker = STYLES[variant]
        panels = (
            (axes[0], [r["formula"]["flops"] / 1e9 for r in rows], [r["measured"]["flops"] for r in rows], 1e-9),
            (axes[1], [r["formula"]["memory_bytes"] / 2**20 for r in rows],
             [r["measured"]["memory_bytes"] for r in rows], 1 / 2**20),
            (axes[2], [r["predicted_seconds"] * 1e3 for r in rows], [r["measured"]["seconds"] for r in rows], 1e3),
        )
        for axis, formula, measured, scale in panels:
            axis.plot(n, formula, "-", color=color, lw=1.2, label=f"{variant} (formula)")
            points = [(x, y * scale) for x, y in zip(n, measured) if y is not None]
            if points:
                axis.plot(*zip(*points), marker, color=color, ms=5, fillstyle="none", label=f"{variant} (measured)")
    fitted = payload["fitted"]
    rate = f"{fitted['gflops_per_second']:.3g} GFLOP/s" if fitted["gflops_per_second"] else "-"
    elements = f"{fitted['gelements_per_second']:.3g} G elements/s" if fitted["gelements_per_second"] else "-"
    overhead = f"{fitted['ms_per_layer_call']:.2g} ms/layer"
    titles = ("forward FLOPs (matrix multiplies)", "activation memory kept for backward",
              f"forward time (fit: {rate}, {elements}, {overhead})")
    labels = ("GFLOP", "MiB (float32)", "ms")
    for axis, title, label in zip(axes, titles, labels):
        axis.set(xscale="log", yscale="log", xlabel="sequence length n", ylabel=label, title=title)
        axis.set_xticks(settings["lengths"], [str(n) for n in settings["lengths"]])
        axis.minorticks_off()
    axes[1].legend(fontsize=6.5)
    quick = "QUICK RUN (tiny sizes): " if settings["quick"] else ""
    figure.suptitle(f"{quick}{payload['layers']} layer(s), width d={payload['d']}, {payload['heads']} heads, "
                    f"batch of {payload['batch_size']}, float32, {payload['run']['threads']} thread(s). "
                    "Lines: formulas of docs/complexity.md; markers: measurements.", fontsize=9)
    save_figure(figure, path)


def table(payload: dict, settings: dict) -> str:
    header = ["variant", "n", "GFLOP formula", "GFLOP counted", "activations MiB formula", "activations MiB measured",
              "time ms predicted", "time ms measured"]
    rows = []
    for r in payload["rows"]:
        counted = r["measured"]["flops"]
        rows.append([
            r["variant"], r["n"], f"{r['formula']['flops'] / 1e9:.4g}",
            "not counted" if counted is None else f"{counted / 1e9:.4g}",
            f"{r['formula']['memory_bytes'] / 2**20:.4g}", f"{r['measured']['memory_bytes'] / 2**20:.4g}",
            f"{r['predicted_seconds'] * 1e3:.3g}", f"{r['measured']['seconds'] * 1e3:.3g}",
        ])
    quick = "QUICK RUN (tiny sizes). " if settings["quick"] else ""
    mismatches = payload["checks"]["count_mismatches"]
    low, high = payload["checks"]["time_measured_over_predicted"]
    elements_low, elements_high = payload["checks"]["elements_counted_over_formula"]
    return (
        f"{quick}{payload['layers']} layer(s), d={payload['d']}, {payload['heads']} heads, batch of "
        f"{payload['batch_size']}, {payload['run']['threads']} thread(s).\n\n" + markdown_table(header, rows)
        + f"\nCounted FLOPs and activation bytes equal the formulas: "
        f"{'yes' if not mismatches else 'NO: ' + '; '.join(mismatches)}. Counted / formula element-wise work: "
        f"{elements_low:.3f} to {elements_high:.3f}. Measured / predicted time: {low:.2f} to {high:.2f}.\n"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
