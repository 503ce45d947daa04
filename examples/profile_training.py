#!/usr/bin/env python
"""Where the main job's time goes: one run of `run_classification.py`'s preset, timed stage by stage.

    python examples/profile_training.py configuration/train/wave-recipe.json --data_dir ../shared/data/imdb

Takes the same preset and options as `run_classification.py` and trains the same model, with timers around each
stage: start-up (Python and the imports), the model (tokenizer, config, MiniLM's table), reading the data,
tokenisation; in training, collation, forward, backward (with the loss), gradient clipping, the optimizer step, the
scheduler and `zero_grad`, evaluations on validation, checkpoints; after training, the final evaluations and saving.
Then, on `--part_batches` training batches, the forward, backward and optimizer-step time of each part of the model
(the wave layers, the n-gram embeddings, the wide part), as the difference between the model and the model without
that part. Writes `profile.json` and `profile.md` (the table) to `--profile_dir`; the table is also printed.
"""

import time

PROCESS_START = time.perf_counter()  # before the imports: start-up counts them

import copy  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
from collections import defaultdict  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import TrainerCallback, set_seed  # noqa: E402

from wave_examples import option  # noqa: E402
from wave_examples.arguments import DataArguments, ModelArguments, ScheduleArguments, parse_preset_arguments  # noqa: E402
from modeling_wave import (  # noqa: E402
    WaveTrainingArguments,
    clip_grad_norm_sparse_aware_,
    create_wave_optimizer,
    enable_sparse_embeddings,
)
from wave_examples.training import check_classification_arguments, prepare_classification  # noqa: E402

logger = logging.getLogger(__name__)


@dataclass
class ProfileArguments:
    profile_dir: str = option("outputs/profile", "Where profile.json and profile.md go.")
    part_batches: int = option(30, "Training batches on which each part of the model is timed (0: skip).")


class Stopwatch:
    """Seconds and counts per stage name; `stage(name)` times a block, `add(name, seconds)` adds a measured span."""

    def __init__(self):
        self.seconds, self.counts = defaultdict(float), defaultdict(int)

    @contextmanager
    def stage(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def add(self, name: str, seconds: float):
        self.seconds[name] += seconds
        self.counts[name] += 1


# The parts of a training step, each between two of the marks that `TrainingStepTimer` sets.
STEP_SPANS = [
    ("train: forward", "forward_start", "forward_end"),
    ("train: backward (with the loss)", "forward_end", "clip_start"),
    ("train: gradient clipping", "clip_start", "clip_end"),
    ("train: optimizer step", "optimizer_start", "optimizer_end"),
    ("train: scheduler and zero_grad", "optimizer_end", "step_end"),
]


class TrainingStepTimer(TrainerCallback):
    """The parts of each training step, from Trainer's step callbacks, the model's forward hooks and the clipping."""

    def __init__(self, watch: Stopwatch, trainer):
        self.watch, self.marks, self.training, self.evaluating = watch, {}, False, False
        trainer.model.register_forward_pre_hook(lambda *_: self._mark("forward_start"))
        trainer.model.register_forward_hook(lambda *_: self._mark("forward_end"))
        clip = trainer._clip_grad_norm

        def timed_clip(model):
            self._mark("clip_start")
            norm = clip(model)
            self._mark("clip_end")
            return norm

        trainer._clip_grad_norm = timed_clip

    def _mark(self, name):
        if not self.evaluating:
            self.marks[name] = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self.training = True

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False

    def on_step_begin(self, args, state, control, **kwargs):
        self._mark("step_start")

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self._mark("optimizer_start")

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._mark("optimizer_end")

    def on_step_end(self, args, state, control, **kwargs):
        marks = {**self.marks, "step_end": time.perf_counter()}
        for name, start, end in STEP_SPANS:
            if start in marks and end in marks:
                self.watch.add(name, marks[end] - marks[start])
        self.marks = {}


def instrument(trainer, watch: Stopwatch) -> TrainingStepTimer:
    """Time collation, evaluations and checkpoints of `trainer`, and the parts of each training step."""
    timer = TrainingStepTimer(watch, trainer)
    trainer.add_callback(timer)
    collate, evaluate, save = trainer.data_collator, trainer.evaluate, trainer._save_checkpoint

    def timed_collate(features):
        if not timer.training:
            return collate(features)
        with watch.stage("train: collation" if not timer.evaluating else "train: collation for evaluations"):  # noqa
            return collate(features)

    def timed_evaluate(*args, **kwargs):
        if not timer.training:
            return evaluate(*args, **kwargs)
        timer.evaluating = True
        try:
            with watch.stage("train: evaluations on validation"):
                return evaluate(*args, **kwargs)
        finally:
            timer.evaluating = False

    def timed_save(*args, **kwargs):
        with watch.stage("train: checkpoints"):
            return save(*args, **kwargs)

    trainer.data_collator, trainer.evaluate, trainer._save_checkpoint = timed_collate, timed_evaluate, timed_save
    return timer


PART_VARIANTS = {  # the model without one part: its time is the whole model's minus the variant's
    "wide part": {"wide_ngram_sizes": []},
    "n-gram embeddings": {"ngram_sizes": []},
    "wave layers": {"num_hidden_layers": 0},
}


def time_parts(trainer, batches: int) -> list[dict]:
    """Median forward, backward and optimizer-step milliseconds per batch of the model and of each variant without a
    part, on the same `batches` training batches, with the optimizer the trainer builds (`create_wave_optimizer`)."""
    loader = trainer.get_train_dataloader()
    samples = [batch for batch, _ in zip(loader, range(batches))]
    rows = {}
    for name, change in {"whole model": {}, **PART_VARIANTS}.items():
        if any(not getattr(trainer.model.config, key) for key in change):
            continue  # the model has no such part
        config = copy.deepcopy(trainer.model.config)
        config.update(change)
        model = type(trainer.model)(config).train()
        if trainer.args.sparse_embeddings:
            enable_sparse_embeddings(model)
        optimizer = create_wave_optimizer(model, trainer.args)
        times = defaultdict(list)
        for batch in samples:
            start = time.perf_counter()
            loss = model(**batch).loss
            forward = time.perf_counter()
            loss.backward()
            backward = time.perf_counter()
            clip_grad_norm_sparse_aware_(model.parameters(), trainer.args.max_grad_norm)  # dense ones too
            optimizer.step()
            optimizer.zero_grad()
            end = time.perf_counter()
            for key, seconds in (("forward", forward - start), ("backward", backward - forward), ("step", end - backward)):
                times[key].append(1000 * seconds)
        rows[name] = {key: statistics.median(values[2:] or values) for key, values in times.items()}  # 2 warm-up
    whole = rows["whole model"]
    parts = [{"part": "whole model", **whole}]
    for name in PART_VARIANTS:
        if name in rows:
            parts.append({"part": name, **{key: whole[key] - rows[name][key] for key in whole}})
    return parts


def write_report(stages: list[dict], parts: list[dict], extra: dict, folder: Path) -> str:
    lines = ["| stage | seconds | share | calls |", "|---|---|---|---|"]
    total = extra["end_to_end_seconds"]
    for row in stages:
        lines.append(f"| {row['stage']} | {row['seconds']:.1f} | {100 * row['seconds'] / total:.1f}% | {row['calls']} |")
    lines.append(f"| **end to end** | **{total:.1f}** | 100% | |")
    if parts:
        lines += ["", "| part of the model | forward ms/batch | backward ms/batch | optimizer step ms/batch |", "|---|---|---|---|"]
        for row in parts:
            lines.append(f"| {row['part']} | {row['forward']:.1f} | {row['backward']:.1f} | {row['step']:.1f} |")
    lines += ["", f"Peak RSS: {extra['peak_rss_mb']:,.0f} MB; torch threads: {extra['threads']}; "
              f"test accuracy {extra['test_accuracy']:.4f}."]
    table = "\n".join(lines) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "profile.md").write_text(table)
    (folder / "profile.json").write_text(json.dumps({"stages": stages, "parts": parts, **extra}, indent=2) + "\n")
    return table


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    dataclass_types = (ModelArguments, DataArguments, WaveTrainingArguments, ScheduleArguments, ProfileArguments)
    *run_args, profile_args = parse_preset_arguments(dataclass_types, argv)
    model_args, data_args, training_args, schedule_args = check_classification_arguments(*run_args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)
    watch = Stopwatch()
    watch.add("start-up (Python, imports)", time.perf_counter() - PROCESS_START)

    trainer, tokenized, _ = prepare_classification(
        model_args, data_args, training_args, schedule_args, phase=watch.stage
    )
    instrument(trainer, watch)
    with watch.stage("training (all of trainer.train)"):
        trainer.train()
    with watch.stage("saving the model"):
        trainer.save_model()
    results = {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        with watch.stage(f"final evaluation: {split}"):
            results.update(trainer.evaluate(tokenized[split], metric_key_prefix=prefix))
    end_to_end = time.perf_counter() - PROCESS_START

    named = {"model": "model (tokenizer, config, MiniLM table)", "data": "reading the data",
             "tokenization": "tokenisation (and the schedule)"}
    training = "training (all of trainer.train)"
    nested = "train: collation for evaluations"  # inside "train: evaluations on validation"
    inner = sum(v for k, v in watch.seconds.items() if k.startswith("train: ") and k != nested)
    watch.add("train: other (data loading, logging, callbacks)", watch.seconds[training] - inner)
    keys = list(watch.seconds)  # in the order the stages first ended: the training total after its parts
    parts_of_training = [k for k in keys if k.startswith("train: ")]
    others = [k for k in keys if k not in parts_of_training]
    order = others[: others.index(training) + 1] + parts_of_training + others[others.index(training) + 1 :]
    stages = [{"stage": named.get(k, k), "seconds": watch.seconds[k], "calls": watch.counts[k]} for k in order]
    parts = time_parts(trainer, profile_args.part_batches) if profile_args.part_batches else []
    extra = {
        "end_to_end_seconds": end_to_end,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "test_accuracy": results["test_accuracy"],
        "eval_accuracy": results["eval_accuracy"],
        "train_updates": trainer.state.global_step,
        "command": "python examples/profile_training.py " + " ".join(argv),
    }
    print(write_report(stages, parts, extra, Path(profile_args.profile_dir)))
    return {"stages": stages, "parts": parts, **extra}


if __name__ == "__main__":
    main()
