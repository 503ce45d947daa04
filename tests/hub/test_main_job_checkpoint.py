"""A checkpoint of the main job (`configuration/train/wave-recipe.json`, sparse tables while it trained) fine-tuned by a
user's own plain script: `AutoTokenizer`, `AutoModelForSequenceClassification`, the unmodified `Trainer` with default
`TrainingArguments` (adamw_torch, max_grad_norm 1.0). Run in a fresh Python, with the package imported and with it
blocked (the code then comes from the checkpoint, `trust_remote_code=True`). The loss must fall, not just not crash.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/hub/test_main_job_checkpoint.py -q`
"""

import json
import textwrap
from pathlib import Path

import pytest
from conftest import shared_data_dir
from example_scripts import load_example
from fresh_python import run_outside_the_checkout

# The user's script of issue 28, plus the evaluation loss on its rows before and after training.
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


@pytest.fixture(scope="module")
def main_job_checkpoint(tmp_path_factory):
    """The main job's preset, as shipped (sparse tables, LazyAdamW), on 200 TREC questions with small tables."""
    folder = tmp_path_factory.mktemp("main-job")
    load_example("run_classification").main([
        "configuration/train/wave-recipe.json", "--data_dir", str(shared_data_dir("trec")), "--output_dir", str(folder),
        "--max_train_samples", "200", "--max_eval_samples", "40", "--max_test_samples", "40", "--min_updates", "4",
        "--max_epochs", "1", "--evaluations", "1", "--disable_tqdm", "true",
        "--config_overrides", "ngram_buckets=1000,wide_buckets=4096",
    ])  # fmt: skip
    return folder


def test_the_main_job_saves_no_training_switch(main_job_checkpoint):
    config = json.loads((main_job_checkpoint / "config.json").read_text())
    assert "sparse_embeddings" not in config and config["wide_ngram_sizes"] == [1, 2, 3]


@pytest.mark.parametrize("package", ["with-package", "without-package"])
def test_a_plain_trainer_script_fine_tunes_the_main_jobs_checkpoint(main_job_checkpoint, tmp_path_factory, package):
    script = f"PACKAGE = {package!r}\n{USER_SCRIPT}"
    cwd, _ = run_outside_the_checkout(script, main_job_checkpoint, tmp_path_factory)
    report = json.loads((Path(cwd) / "report.json").read_text())
    assert report["after"] < report["before"] and not report["sparse"]
    remote = report["model_module"].startswith("transformers_modules")
    assert remote == (package == "without-package"), report["model_module"]
