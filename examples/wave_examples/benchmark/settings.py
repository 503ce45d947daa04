"""The benchmark's options: `benchmark.py [preset.json] [--key value ...]`, as every example takes them (a preset
from `configuration/benchmark-*.json`, the command line wins), and `--quick` small defaults under both.

`parse_settings` returns the settings as the plain dict that the report records and the memory probes receive:
`models` and `seq_lengths` as lists (comma-separated on the command line, lists or strings in a preset),
`max_lengths` as a dict (`bert-base=1024,minilm=512`, or a JSON object in a preset).
"""

import json
from dataclasses import asdict, dataclass, fields
from typing import Literal

from wave_examples import option, repo_path
from wave_examples.arguments import apply_quick_values, parse_preset_arguments, preset_to_command_line
from wave_examples.benchmark.models import DEFAULT_MODELS, MODEL_RECIPES, recipe_of

PAPER_SEQ_LENGTH = 128
AG_NEWS_TRAIN_SIZE = 120_000  # AG News training sequences (the 'epoch' of the paper's Table 2)


@dataclass
class BenchmarkArguments:
    models: str = option(",".join(DEFAULT_MODELS), f"comma-separated: {', '.join(MODEL_RECIPES)} or Wave .json files")
    batch_size: int = option(64, "batch of the main measurement (the paper's)")
    seq_length: int = option(PAPER_SEQ_LENGTH, "length of the main measurement")
    seq_lengths: str = option("128,256,512,1024,2048,4096,8192", "comma-separated lengths of the sweep ('' for none)")
    sweep_batch_size: int = option(8, "batch of the sweep")
    repeats: int = option(5, "timed rounds at the main point")
    sweep_repeats: int = option(3, "timed rounds per sweep length")
    warmup: int = option(1, "untimed rounds before every point")
    max_step_seconds: float = option(15.0, "sweep budget: skip lengths whose step is predicted longer")
    max_lengths: str = option("", "per-model sweep caps, e.g. 'bert-base=1024,minilm=512'")
    epoch_steps: int = option(0, "time this many consecutive steps for the epoch estimate (0: median)")
    epoch_size: int = option(AG_NEWS_TRAIN_SIZE, "sequences per epoch (AG News' training set)")
    output_dir: str = option("outputs/benchmark", "where benchmark.json, benchmark.md and the plots go")
    device: Literal["auto", "cpu", "cuda"] = option("auto", "auto: cuda when available")
    dtype: Literal["float32", "bfloat16"] = option("float32", "bfloat16: autocast around the forward pass")
    threads: int = option(0, "torch threads (0: torch's default)")
    memory: bool = option(True, "peak memory in a fresh process per model (--no_memory skips it)")
    memory_jobs: int = option(2, "memory processes at a time on CPU (peaks are per process)")
    matmul_repeats: int = option(2, "products per shape and round in the matmul probe")
    compile: bool = option(False, "torch.compile every model (slow start)")
    seed: int = option(0, "seed of the weights and the synthetic batches")
    quick: bool = option(False, "tiny models and lengths (tests, smoke runs)")


# What --quick puts in place of the defaults (the paper's setting) where neither preset nor command line gives a value.
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
OPTIONS = [f.name for f in fields(BenchmarkArguments)]


def _items(value, separator=",") -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(separator) if item.strip()]
    return [str(item) for item in value]


def normalize(raw: dict) -> dict:
    """Settings as the benchmark uses them: lists, sorted lengths, integer caps, checked model names."""
    settings = dict(raw)
    settings["models"] = _items(settings["models"])
    settings["seq_lengths"] = sorted(int(length) for length in _items(settings["seq_lengths"]))
    caps = settings["max_lengths"]
    if isinstance(caps, str):
        caps = dict(item.split("=") for item in _items(caps))
    settings["max_lengths"] = {name: int(length) for name, length in caps.items()}
    if settings["compile"]:  # compiling for train mode, eval mode and inference mode takes a few rounds
        settings["warmup"] = max(settings["warmup"], 3)
    for name in settings["models"]:
        recipe_of(name)
    return settings


DEFAULTS = normalize(asdict(BenchmarkArguments()))  # the settings without preset or options


def preset_arguments(preset: dict, path: str) -> list[str]:
    """A benchmark preset as `--key value` arguments (its lists and dicts as the command line writes them)."""
    preset = {key: value for key, value in preset.items() if key != "description"}
    unknown = set(preset) - set(OPTIONS)
    if unknown:
        raise SystemExit(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
    for key in ("models", "seq_lengths"):
        if isinstance(preset.get(key), list):
            preset[key] = ",".join(str(item) for item in preset[key])
    if isinstance(preset.get("max_lengths"), dict):
        preset["max_lengths"] = ",".join(f"{name}={length}" for name, length in preset["max_lengths"].items())
    return preset_to_command_line(preset)


def parse_settings(argv: list[str]) -> dict:
    """The preset, then the command line; with `--quick`, `QUICK_DEFAULTS` for what both left at the default (as in
    every example: `apply_quick_values`). A preset's `description` is kept as it is."""
    args, preset = list(argv), {}
    if args and args[0].endswith(".json"):
        path = args.pop(0)
        preset = json.loads(repo_path(path).read_text())
        args = preset_arguments(preset, path) + args
    (arguments,) = parse_preset_arguments((BenchmarkArguments,), args)
    if arguments.quick:
        apply_quick_values(arguments, QUICK_DEFAULTS)
    settings = normalize(asdict(arguments))
    if "description" in preset:
        settings["description"] = preset["description"]
    return settings
