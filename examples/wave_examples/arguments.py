"""One way to give an example its settings: `script.py [preset.json] [--key value ...]`.

A preset is a JSON file of `--key value` pairs (a flat object, as `configuration/*.json`); any `--key value` after it
wins. Every field of the script's dataclasses is a key, parsed by `HfArgumentParser` as in Transformers' examples.
"""

import json

from transformers import HfArgumentParser

from wave_examples import repo_path
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


def parse_experiment_arguments(experiment_class, argv: list[str], quick: dict, quick_data: dict) -> tuple:
    """`DataArguments` and an example's own arguments. With `--quick`, the `quick` and `quick_data` values replace
    what the command line left at its default. Without data options: IMDB from the Hub."""
    data_args, args = parse_preset_arguments((DataArguments, experiment_class), argv)
    if args.quick:
        for dataclass_args, values in ((args, quick), (data_args, quick_data)):
            defaults = type(dataclass_args)()
            for name, value in values.items():
                if getattr(dataclass_args, name) == getattr(defaults, name):  # the command line wins
                    setattr(dataclass_args, name, value)
    if data_args.data_dir is None and data_args.dataset_name is None:
        data_args.dataset_name = "stanfordnlp/imdb"
    return data_args, args
