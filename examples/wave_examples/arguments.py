"""One way to give an example its settings: `script.py [preset.json] [--key value ...]`.

A preset is a JSON file of `--key value` pairs (a flat object, as `configuration/*.json`); any `--key value` after it
wins. Every field of the script's dataclasses is a key, parsed by `HfArgumentParser` as in Transformers' examples.
"""

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import transformers
from transformers import HfArgumentParser

from wave_examples import option, repo_path
from wave_examples.data import DataArguments


def parse_preset_arguments(dataclass_types: tuple, argv: list[str]) -> tuple:
    """The dataclasses of `dataclass_types` filled from an optional leading preset, then the command line."""
    args = list(argv)
    if args and args[0].endswith(".json"):
        args = preset_to_command_line(json.loads(repo_path(args.pop(0)).read_text())) + args
    return HfArgumentParser(dataclass_types).parse_args_into_dataclasses(args=args)


def preset_to_command_line(preset: dict) -> list[str]:
    """`{"key": value}` as `--key value`; a list gives several values, a JSON null keeps the field's default."""
    args = []
    for key, value in preset.items():
        if value is None:  # argparse would read the string "None"
            continue
        values = value if isinstance(value, list) else [value]
        args += [f"--{key}", *(json.dumps(v) if isinstance(v, dict) else str(v) for v in values)]
    return args


def apply_quick_values(arguments, values: dict):
    """`--quick`: `values` replace the fields of `arguments` that preset and command line left at their defaults."""
    defaults = type(arguments)()
    for name, value in values.items():
        if getattr(arguments, name) == getattr(defaults, name):
            setattr(arguments, name, value)


def parse_experiment_arguments(experiment_class, argv: list[str], quick: dict, quick_data: dict) -> tuple:
    """`DataArguments` and an example's own arguments. With `--quick`, the `quick` and `quick_data` values replace
    what the command line left at its default. Without data options: IMDB from the Hub."""
    data_args, args = parse_preset_arguments((DataArguments, experiment_class), argv)
    if args.quick:
        apply_quick_values(args, quick)
        apply_quick_values(data_args, quick_data)
    if data_args.data_dir is None and data_args.dataset_name is None:
        data_args.dataset_name = "stanfordnlp/imdb"
    return data_args, args


@dataclass
class ExperimentArguments:
    """What every experiment script takes besides its data: where the results go, a smoke-test switch, the seed."""

    output_dir: str = option("runs/experiment", "Where the models and results.json go.")
    quick: bool = option(False, "Tiny settings, a few texts and steps: a smoke test.")
    seed: int = option(42, "Seed of the split, the initialisations and the data order.")


@dataclass
class WaveSizeArguments(ExperimentArguments):
    """The size of the Wave Network an experiment trains from scratch."""

    hidden_size: int = option(256, "Width d of the Wave Network.")
    num_hidden_layers: int = option(1, "Number of Wave blocks (paper: 1).")
    intermediate_size: int = option(1024, "Feed-forward width (0: none).")
    wave_mode: str = option("modulation", "modulation or interference.")


def start_experiment(experiment_class, argv: list[str], quick: dict, quick_data: dict) -> tuple:
    """The arguments (`parse_experiment_arguments`), logging at INFO (Transformers' own at WARNING) and the output
    folder, made: `(data_args, args, output_dir)`."""
    data_args, args = parse_experiment_arguments(experiment_class, argv, quick, quick_data)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    return data_args, args, output_dir


def run_settings(args, leave_out: tuple[str, ...] = ()) -> dict:
    """What results.json records of a run's arguments: `quick` first, then all but `output_dir` and `leave_out`."""
    left_out = ("quick", "output_dir", *leave_out)
    return {"quick": args.quick, **{k: v for k, v in asdict(args).items() if k not in left_out}}


def write_results(output_dir: Path, results: dict):
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
