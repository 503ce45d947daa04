"""Interleaved timing: every model of a point takes one training step and one inference pass per round (A B C,
A B C, ...), with a probe of `torch.mm` at the Wave layer's own shapes as one more participant (the physical limit);
then the length sweep with its time budget, and the epoch estimate from consecutive steps."""

import gc
import math
import statistics
import sys
import time

import torch

from wave_examples.benchmark.models import ModelUnderTest
from wave_examples.flops import wave_linears

_START = time.perf_counter()


def log(message: str):
    print(f"[{time.perf_counter() - _START:6.1f} s] {message}", file=sys.stderr, flush=True)


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def timed_train_step(runner: ModelUnderTest, batch: dict) -> float:
    runner.model.train()
    return timed(lambda: runner.train_step(batch), runner.device)


def timed_inference(runner: ModelUnderTest, batch: dict) -> float:
    runner.model.eval()
    return timed(lambda: runner.inference(batch), runner.device)


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "samples": samples}


# --- the physical limit: matrix multiplies at the Wave layer's shapes ------------------------------------------------


def wave_matmul_shapes(config, tokens: int) -> list[dict]:
    """The (m, k, n) products of one Wave layer's linear maps: forward, and the two backward products of each."""
    shapes = []
    for name, fan_in, fan_out in wave_linears(config.hidden_size, config.intermediate_size, config.wave_readout):
        shapes += [
            {"name": f"{name} forward", "pass": "forward", "m": tokens, "k": fan_in, "n": fan_out, "layout": "x@Wt"},
            {"name": f"{name} grad input", "pass": "backward", "m": tokens, "k": fan_out, "n": fan_in, "layout": "g@W"},
            {"name": f"{name} grad weight", "pass": "backward", "m": fan_out, "k": tokens, "n": fan_in,
             "layout": "gt@x"},
        ]  # fmt: skip
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


# --- interleaved rounds ---------------------------------------------------------------------------------------------


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
                train_s = timed_train_step(runner, batch)
                inference_s = timed_inference(runner, batch)
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
        log(f"{tag} B={batch_size} T={length} round {round_index + 1}/{warmup + repeats}"
            + ("" if record else " (warm-up)"))  # fmt: skip
    for runner in runners:
        if runner.name in failed:
            results[runner.name] = {"skipped": failed[runner.name]}
            continue
        train, inference = stats(samples[runner.name]["train"]), stats(samples[runner.name]["inference"])
        flops = runner.flops(batch_size, length)
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


def run_main_point(settings: dict, device: torch.device) -> dict:
    """The main point: all models in memory, interleaved rounds with the matmul probe, then the epoch estimate.
    Returns the report's `models`, `epoch`, `physical_limit` and `main` parts."""
    batch_size, length = settings["batch_size"], settings["seq_length"]
    runners = [ModelUnderTest(name, settings, length, device) for name in settings["models"]]
    part = {"models": {r.name: r.describe() for r in runners}, "epoch": {}, "physical_limit": {}}
    shapes = unique_shapes([r.config for r in runners if r.config.model_type == "wave"], batch_size * length)
    matmul_dtype = torch.bfloat16 if settings["dtype"] == "bfloat16" else torch.float32
    matmul = MatmulProbe(shapes, device, matmul_dtype, settings["matmul_repeats"]) if shapes else None
    results = measure_point(runners, batch_size, length, settings["warmup"], settings["repeats"], matmul, tag="[main]")
    steps_per_epoch = math.ceil(settings["epoch_size"] / batch_size)
    for result in results.values():
        if "train_step_s" in result:
            result["epoch_s_from_median"] = steps_per_epoch * result["train_step_s"]["median"]
    part["main"] = {"batch_size": batch_size, "seq_length": length, "results": results, "matmul": {}}
    if matmul is not None:
        part["main"]["matmul"] = matmul.summary()
        for runner in runners:
            result = results[runner.name]
            if runner.config.model_type == "wave" and "train_step_s" in result:
                own = wave_matmul_shapes(runner.config, batch_size * length)
                part["physical_limit"][runner.name] = physical_limit(result, own, part["main"]["matmul"])
    if settings["epoch_steps"] > 0:
        part["epoch"] = run_epoch_estimate([r for r in runners if "train_step_s" in results[r.name]], settings)
    del matmul
    for runner in runners:
        runner.release()
    del runners
    gc.collect()
    return part


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
