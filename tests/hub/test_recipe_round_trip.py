"""The recipe (`configuration/train/wave-recipe.json`, the main preset) from training to a stranger's hands: a
checkpoint trained briefly by `run_classification.py` (sparse tables, `WaveTrainer`) on a TREC subset is fine-tuned
by the issue's own plain Trainer script (package imported, and through `trust_remote_code` alone), pushed to a local
Hub (`hub_server.py`), pulled where `modeling_wave` cannot be imported (`trust_remote_code=True`), fine-tuned on SUBJ
(2 classes, not TREC's 6) with the plain `transformers.Trainer` and used through `pipeline`. On the same checkpoint,
locally: a LoRA adapter trained with the plain Trainer, and the ONNX export checked with ONNX Runtime.

The tables of the recipe are small here (`ngram_buckets=1000,wide_buckets=4096`) so that the run takes seconds; the
model is otherwise the preset's (hidden 64, bigram embeddings, wide uni-, bi- and trigram part).

Run: `OMP_NUM_THREADS=1 python -m pytest tests/hub/test_recipe_round_trip.py -q`
"""

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import peft
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load, load_file
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments

from conftest import EXPECTED_AUTO_MAP, REPO_ROOT, shared_data_dir
from example_scripts import load_example
from fresh_python import run_outside_the_checkout
from modeling_wave import WaveForSequenceClassification
from test_hub import PICKLE_SUFFIXES, home, hub, run_client  # noqa: F401  (home, hub: the Hub's fixtures)

REPO_ID = "user/wave-recipe"
SUBJ_LABELS = {0: "subjective", 1: "objective"}  # shared/data/subj/README.md
# TREC-like questions of different lengths, so that a batch of them is padded.
QUESTIONS = [
    "What is the capital of Australia ?",
    "Who wrote Hamlet ?",
    "How many miles is it from London to the moon and back again by the shortest route ?",
    "Why ?",
]
SUBJ_TEXTS = ["a charming , funny and wholly unexpected film .", "in 1942 , a young soldier returns to his village ."]
RECIPE_TRAINING = [
    "--max_train_samples", "64", "--max_eval_samples", "32", "--max_test_samples", "32",
    "--min_updates", "4", "--max_epochs", "2", "--evaluations", "2", "--disable_tqdm", "true",
    "--config_overrides", "ngram_buckets=1000,wide_buckets=4096",
]  # fmt: skip
# The Linear layers of every Wave block; SEQ_CLS also trains a copy of the `classifier` (PEFT's modules_to_save).
LORA_TARGETS = ["projection", "readout"]


def padded_batch(tokenizer, texts) -> dict:
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return {key: batch[key] for key in ("input_ids", "attention_mask")}


# -- the recipe checkpoint, trained once for the module --------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """`run_classification.py configuration/train/wave-recipe.json` on 64 TREC questions: the output folder."""
    output_dir = tmp_path_factory.mktemp("recipe") / "trec"
    preset = REPO_ROOT / "configuration" / "train" / "wave-recipe.json"
    argv = [str(preset), "--data_dir", str(shared_data_dir("trec")), "--output_dir", str(output_dir), *RECIPE_TRAINING]
    load_example("run_classification").main(argv)
    return output_dir


@pytest.fixture(scope="module")
def recipe_model(recipe):
    return WaveForSequenceClassification.from_pretrained(recipe).eval()


@pytest.fixture(scope="module")
def tokenizer(recipe):
    return AutoTokenizer.from_pretrained(recipe)


@pytest.fixture(scope="module")
def recipe_logits(recipe_model, tokenizer):
    with torch.no_grad():
        return recipe_model(**padded_batch(tokenizer, QUESTIONS)).logits


def test_recipe_trained_with_sparse_tables_and_saved_a_plain_checkpoint(recipe, recipe_model):
    """The run used the recipe's switches; none of them is in the checkpoint, whose tables load dense."""
    args = torch.load(recipe / "training_args.bin", weights_only=False)
    assert args.sparse_embeddings is True and args.wide_learning_rate == 0.03
    config = json.loads((recipe / "config.json").read_text())
    assert "sparse_embeddings" not in config and config["auto_map"] == EXPECTED_AUTO_MAP
    assert (config["hidden_size"], config["ngram_sizes"], config["wide_ngram_sizes"]) == (64, [2], [1, 2, 3])
    assert list(config["id2label"].values()) == [f"LABEL_{i}" for i in range(6)]  # TREC's classes, unnamed in its CSV
    assert {"model.safetensors", "modeling_wave.py", "configuration_wave.py", "tokenizer.json"} <= {
        path.name for path in recipe.iterdir()
    }
    assert not recipe_model.is_sparse_embeddings
    assert recipe_model.wide is not None and recipe_model.wide.weight.abs().sum() > 0  # the wide part was trained


# -- a user's own plain Trainer script on the checkpoint, with the package and without it -----------------------------

# The user's script of issue 28 (the texts are theirs, not TREC's), plus the evaluation loss on its rows before and after training.
USER_SCRIPT = textwrap.dedent(
    """
    import sys
    if PACKAGE == "with-package":
        import modeling_wave  # registers the Wave classes with the Auto classes
        load = {}
    else:
        sys.modules["modeling_wave"] = None  # any `import modeling_wave` now raises ImportError
        load = {"trust_remote_code": True}
    import json
    from pathlib import Path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments
    from datasets import Dataset

    folder = sys.argv[1]
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, **load)
    ds = Dataset.from_dict({"text": ["great movie", "terrible plot"] * 32, "label": [1, 0] * 32})
    ds = ds.map(lambda b: tok(b["text"]), batched=True)
    args = TrainingArguments("out", per_device_train_batch_size=16, max_steps=4, report_to=[], use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds, eval_dataset=ds, processing_class=tok)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    report = {"before": before, "after": after, "model_module": type(model).__module__,
              "sparse": any(getattr(m, "sparse", False) for m in model.modules())}
    Path("report.json").write_text(json.dumps(report))
    """
)



@pytest.mark.parametrize("package", ["with-package", "without-package"])
def test_the_issues_plain_trainer_script_fine_tunes_the_recipe_checkpoint(recipe, tmp_path_factory, package):
    script = f"PACKAGE = {package!r}\n{USER_SCRIPT}"
    cwd, _ = run_outside_the_checkout(script, recipe, tmp_path_factory)
    report = json.loads((Path(cwd) / "report.json").read_text())
    assert report["after"] < report["before"] and not report["sparse"]
    remote = report["model_module"].startswith("transformers_modules")
    assert remote == (package == "without-package"), report["model_module"]


# -- push, then pull and fine-tune where the package is not installed -----------------------------------------------


PUSH = """
from transformers import AutoTokenizer
from modeling_wave import WaveForSequenceClassification
folder, repo_id = sys.argv[1:]
commits = {"tokenizer": AutoTokenizer.from_pretrained(folder).push_to_hub(repo_id).oid}
commits["model"] = WaveForSequenceClassification.from_pretrained(folder).push_to_hub(repo_id).oid
report(**commits)
"""


@pytest.fixture(scope="module")
def pushed(hub, home, recipe):
    return run_client(hub, home, PUSH, str(recipe), REPO_ID)


PULL_AND_FINE_TUNE = """
import datasets
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, pipeline
try:
    import modeling_wave
    raise SystemExit("modeling_wave must not be importable here")
except ImportError:
    pass
repo_id, subj_csv, questions, subj_texts, labels = sys.argv[1], sys.argv[2], *map(json.loads, sys.argv[3:])
id2label = {int(i): name for i, name in labels.items()}
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
as_pushed = AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True).eval()

model, loading = AutoModelForSequenceClassification.from_pretrained(
    repo_id, trust_remote_code=True, id2label=id2label, label2id={v: k for k, v in id2label.items()},
    ignore_mismatched_sizes=True, output_loading_info=True,
)
wave_sums = {name: p.double().sum().item() for name, p in model.named_parameters() if name.startswith("wave.")}

rows = datasets.load_dataset("csv", data_files=subj_csv, split="train").select(range(256))
rows = rows.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=64), batched=True,
                remove_columns=["text"])
args = TrainingArguments(output_dir="subj-trainer", use_cpu=True, report_to=[], max_steps=24, learning_rate=3e-3)
trainer = Trainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer)
loss_before = trainer.evaluate(rows)["eval_loss"]
training_loss = trainer.train().training_loss
loss_after = trainer.evaluate(rows)["eval_loss"]
trainer.save_model("subj-model")

classifier = pipeline("text-classification", model="subj-model", trust_remote_code=True)
report(
    model_module=type(as_pushed).__module__,
    pushed_logits=logits(as_pushed, tokenizer, questions),
    num_labels=model.config.num_labels,
    mismatched=sorted(key for key, *_ in loading["mismatched_keys"]),
    missing=sorted(loading["missing_keys"]),
    wave_sums=wave_sums,
    loss_before=loss_before,
    loss_after=loss_after,
    training_loss=training_loss,
    pipeline_top=classifier(subj_texts),
    pipeline_all=classifier(subj_texts, top_k=None),
    pipeline_module=type(classifier.model).__module__,
)
"""


@pytest.fixture(scope="module")
def fine_tuned(hub, home, pushed):
    """What a user without the package gets: the pushed logits, then a fine-tuning on SUBJ and a pipeline."""
    subj_csv = str(shared_data_dir("subj") / "train.csv")
    arguments = (json.dumps(QUESTIONS), json.dumps(SUBJ_TEXTS), json.dumps(SUBJ_LABELS))
    return run_client(hub, home, PULL_AND_FINE_TUNE, REPO_ID, subj_csv, *arguments, package=False)


def test_push_puts_the_recipe_code_and_weights_on_the_hub(hub, pushed, recipe):
    assert [commit["sha"] for commit in hub.commits(REPO_ID)][:2] == [pushed["model"], pushed["tokenizer"]]
    files = hub.files(REPO_ID)
    for name in ("modeling_wave.py", "configuration_wave.py"):
        assert files[name] == (REPO_ROOT / "modeling_wave" / name).read_bytes()
    assert json.loads(files["config.json"])["auto_map"] == EXPECTED_AUTO_MAP
    assert "tokenizer.json" in files and [path for path in files if path.endswith(PICKLE_SUFFIXES)] == []
    pushed_weights, saved_weights = load(files["model.safetensors"]), load_file(recipe / "model.safetensors")
    assert pushed_weights.keys() == saved_weights.keys()
    for name, tensor in saved_weights.items():
        assert torch.equal(pushed_weights[name], tensor), name


def test_hub_copy_without_package_gives_the_recipe_logits(fine_tuned, recipe_logits):
    assert fine_tuned["model_module"].startswith("transformers_modules.")  # the class came from the Hub's files
    torch.testing.assert_close(torch.tensor(fine_tuned["pushed_logits"]), recipe_logits, atol=1e-5, rtol=1e-5)


def test_two_class_fine_tuning_reinitialises_the_heads_only(fine_tuned, recipe_model):
    """From 6 TREC classes to 2 SUBJ classes: the classifier and the wide part start anew, the wave is the recipe's."""
    assert fine_tuned["num_labels"] == 2
    assert fine_tuned["mismatched"] == ["classifier.bias", "classifier.weight", "wide.weight"]
    assert fine_tuned["missing"] == []
    parameters = recipe_model.named_parameters()
    expected = {name: p.double().sum().item() for name, p in parameters if name.startswith("wave.")}
    assert fine_tuned["wave_sums"] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_plain_trainer_fine_tuning_lowers_the_loss(fine_tuned):
    """Dense tables, torch's AdamW and clipping: the plain Trainer trains the checkpoint of a sparse run."""
    assert np.isfinite(fine_tuned["training_loss"])
    assert fine_tuned["loss_after"] < fine_tuned["loss_before"], fine_tuned


def test_pipeline_of_the_fine_tuned_model_gives_its_label_names(fine_tuned):
    assert fine_tuned["pipeline_module"].startswith("transformers_modules.")
    names = set(SUBJ_LABELS.values())
    assert len(fine_tuned["pipeline_top"]) == len(SUBJ_TEXTS)
    for prediction in fine_tuned["pipeline_top"]:
        assert prediction["label"] in names and 0 <= prediction["score"] <= 1
    for scores in fine_tuned["pipeline_all"]:
        assert {item["label"] for item in scores} == names
        assert all(0 <= item["score"] <= 1 for item in scores)
        assert sum(item["score"] for item in scores) == pytest.approx(1, abs=1e-5)


def test_client_asked_nothing_the_server_does_not_know(hub, fine_tuned):
    assert hub.unknown_requests == []


# -- LoRA on the recipe, with the plain Trainer ----------------------------------------------------------------------


def trec_rows(tokenizer, count: int) -> list[dict]:
    """The last `count` TREC training questions, tokenized, with their labels."""
    with open(shared_data_dir("trec") / "train.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[-count:]
    encoded = tokenizer([row["text"] for row in rows], truncation=True, max_length=64)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": int(row["label"])}
        for ids, mask, row in zip(encoded["input_ids"], encoded["attention_mask"], rows)
    ]


@pytest.fixture(scope="module")
def lora(recipe, tokenizer, tmp_path_factory):
    """A LoRA adapter on every Wave block of the recipe, trained 8 steps by the plain Trainer; the PEFT model."""
    torch.manual_seed(0)
    model = get_peft_model(
        WaveForSequenceClassification.from_pretrained(recipe),
        LoraConfig(task_type="SEQ_CLS", target_modules=LORA_TARGETS, r=4),
    )
    folder = str(tmp_path_factory.mktemp("lora"))
    args = TrainingArguments(output_dir=folder, use_cpu=True, report_to=[], max_steps=8, learning_rate=1e-2)
    rows, collator = trec_rows(tokenizer, 64), DataCollatorWithPadding(tokenizer)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collator).train()
    return model.eval()


def base_name(peft_name: str) -> str:
    """The checkpoint's name of a base weight inside the PEFT model."""
    name = peft_name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".").replace(".original_module.", ".")


def test_lora_trains_the_adapters_and_the_new_head_only(lora, recipe_model, tokenizer, recipe_logits):
    lora_layers = [module for module in lora.modules() if isinstance(module, peft.tuners.lora.LoraLayer)]
    assert len(lora_layers) == len(LORA_TARGETS) * recipe_model.config.num_hidden_layers
    trainable = {name for name, p in lora.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or ".modules_to_save." in name for name in trainable)
    lora_b = [p for name, p in lora.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().max() > 0 for p in lora_b)  # B starts at zero: it moved
    with torch.no_grad():
        adapted = lora(**padded_batch(tokenizer, QUESTIONS)).logits
    assert (adapted - recipe_logits).abs().max() > 1e-3


def test_lora_leaves_the_recipe_weights_unchanged(lora, recipe):
    saved = load_file(recipe / "model.safetensors")
    frozen = {base_name(name): p for name, p in lora.named_parameters() if not p.requires_grad}
    assert frozen.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(frozen[name], tensor), name


# -- ONNX ------------------------------------------------------------------------------------------------------------


def test_onnx_export_of_the_recipe_matches_pytorch_on_a_padded_batch(recipe_model, tokenizer, recipe_logits, tmp_path):
    export_onnx = load_example("export_onnx")
    session = export_onnx.onnx_session(export_onnx.export_onnx(recipe_model, tmp_path / "recipe.onnx"))
    batch = padded_batch(tokenizer, QUESTIONS)
    assert (batch["attention_mask"] == 0).any()  # some questions are padded
    feed = {name: tensor.numpy() for name, tensor in batch.items()}
    np.testing.assert_allclose(session.run(["logits"], feed)[0], recipe_logits.numpy(), rtol=0, atol=1e-4)
