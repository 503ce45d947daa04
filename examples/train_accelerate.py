#!/usr/bin/env python
"""Train and evaluate a text classifier (a Wave Network by default) with a plain Accelerate loop, no Trainer.

    accelerate launch [--config_file configuration/accelerate/<setup>.yaml] examples/train_accelerate.py \
        configuration/train/imdb-ultra-small.json [--key value ...]

For users who write their own loop: `Accelerator`, `prepare`, `backward`, `gather_for_metrics`, `save_state` /
`load_state` and `save_pretrained`. It takes `run_classification.py`'s presets and options and trains the same model:
model, data and schedule from `wave_examples.training.prepare_model_and_data`; sparse tables, optimizer and clipping
from the package (`enable_sparse_embeddings`, `create_wave_optimizer`, `clip_grad_norm_sparse_aware_`), as
`WaveTrainer` takes them. The `WaveTrainingArguments` it reads are listed in docs/distributed.md; what only Trainer
does is refused by name (`refuse_what_this_loop_cannot_honour`).

Checkpoints (`output_dir/checkpoint-<step>`, `save_state`) resume with `--resume_from_checkpoint`, mid-epoch included;
an output_dir that holds checkpoints resumes from the last. Launch commands: docs/distributed.md.
"""

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs, DistributedType
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import DataCollatorWithPadding, get_scheduler, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import rotate_checkpoints

from modeling_wave import clip_grad_norm_sparse_aware_, create_wave_optimizer, enable_sparse_embeddings
from modeling_wave import has_sparse_gradients
from wave_examples.data import build_compute_metrics
from wave_examples.training import last_checkpoint, parse_classification_arguments, prepare_model_and_data

logger = logging.getLogger(__name__)
LOOP_SAMPLINGS = ("random", "group_by_length")  # the train_sampling_strategy values this loop draws batches by


@dataclass
class LoopState:
    """Where the loop stands; saved and restored with every checkpoint (`register_for_checkpointing`)."""

    global_step: int = 0  # optimizer steps done
    best_metric: float | None = None  # of `metric_for_best_model`, when `load_best_model_at_end`
    best_step: int | None = None  # the evaluation that gave it
    best_checkpoint: str | None = None  # its checkpoint folder

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict):
        for name, value in state.items():
            setattr(self, name, value)

    def record_evaluation(self, training_args, metrics: dict, step: int):
        """Remember the best evaluation so far (Trainer's rule: `metric_for_best_model`, `greater_is_better`)."""
        if not training_args.load_best_model_at_end:
            return
        name = training_args.metric_for_best_model
        key = name if name.startswith("eval_") else f"eval_{name}"
        if key not in metrics:
            raise ValueError(f"metric_for_best_model={name!r} is not among the evaluation metrics {sorted(metrics)}.")
        value = metrics[key]
        better = self.best_metric is None or (
            value > self.best_metric if training_args.greater_is_better else value < self.best_metric
        )
        if better:
            self.best_metric, self.best_step = value, step


def build_accelerator(training_args) -> Accelerator:
    """Mixed precision and the launcher's setup (processes, FSDP, DeepSpeed) come from `accelerate launch`;
    `--bf16` / `--fp16` override its precision."""
    mixed_precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else None
    log_with = [name for name in training_args.report_to if name != "none"] or None
    return Accelerator(
        cpu=training_args.use_cpu,
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=training_args.gradient_accumulation_steps,
        # The shuffling order depends on the seed and the epoch only: the same on every process and after a resume.
        dataloader_config=DataLoaderConfiguration(
            use_seedable_sampler=True,
            data_seed=training_args.data_seed if training_args.data_seed is not None else training_args.seed,
        ),
        # Every parameter of a Wave model gets a gradient every step (tests/examples/test_distributed.py).
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=bool(training_args.ddp_find_unused_parameters))
        ],
        log_with=log_with,
        project_dir=training_args.output_dir,
    )


def warn_if_setup_ignored(accelerator: Accelerator):
    """Accelerate (1.15) turns FSDP and DeepSpeed on for GPUs and other accelerators only: with `use_cpu` the
    launcher's FSDP or DeepSpeed config silently becomes plain DDP (MULTI_CPU). Say so instead."""
    requests = (("ACCELERATE_USE_FSDP", DistributedType.FSDP), ("ACCELERATE_USE_DEEPSPEED", DistributedType.DEEPSPEED))
    for variable, wanted in requests:
        if os.environ.get(variable, "false").lower() == "true" and accelerator.distributed_type != wanted:
            logger.warning(
                f"The launcher asked for {wanted.value}, but Accelerate runs {accelerator.distributed_type.value} on "
                f"{accelerator.device.type}: every process keeps a full copy of the model (see docs/distributed.md)."
            )


def refuse_what_this_loop_cannot_honour(training_args, data_args):
    """What only Trainer (`run_classification.py`) does, refused by name rather than quietly training another model."""
    sampling = training_args.train_sampling_strategy
    refused = {
        "--teacher (distillation: WaveTrainer's loss)": data_args.teacher,
        "--torch_compile (Trainer compiles the model; here, compile it yourself)": training_args.torch_compile,
        "--push_to_hub (Trainer's; push the saved folder with `huggingface_hub`)": training_args.push_to_hub,
        f"--train_sampling_strategy {sampling} (random or group_by_length here)": sampling not in LOOP_SAMPLINGS,
    }
    if named := [option for option, given in refused.items() if given]:
        raise ValueError(f"train_accelerate.py cannot honour {'; '.join(named)}. Use run_classification.py (the same "
                         "presets with Trainer), or leave the option out.")  # fmt: skip


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """Trainer's `group_by_length` order (texts of similar length batched together), drawn from `seed + epoch`, so that
    every process draws the same order and a resumed run replays its epoch (`set_epoch`)."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int):
        self.generator.manual_seed(self.seed + epoch)


def train_dataloader_for(dataset, training_args, collator) -> DataLoader:
    """Shuffled batches, or (`train_sampling_strategy="group_by_length"`) batches of texts of similar length."""
    options = {"collate_fn": collator, "num_workers": training_args.dataloader_num_workers}
    batch_size = training_args.per_device_train_batch_size
    if training_args.train_sampling_strategy != "group_by_length":
        return DataLoader(dataset, shuffle=True, batch_size=batch_size, **options)
    seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    lengths = [len(ids) for ids in dataset["input_ids"]]
    sampler = EpochSeededLengthGroupedSampler(batch_size * training_args.gradient_accumulation_steps, lengths, seed)
    return DataLoader(dataset, sampler=sampler, batch_size=batch_size, **options)


def clip_gradients(accelerator: Accelerator, model, max_norm: float):
    """`accelerator.clip_grad_norm_`, or `clip_grad_norm_sparse_aware_` for sparse tables (as `WaveTrainer`)."""
    if not has_sparse_gradients(model.parameters()):
        return accelerator.clip_grad_norm_(model.parameters(), max_norm)
    accelerator.unscale_gradients()
    return clip_grad_norm_sparse_aware_(model.parameters(), max_norm)


def evaluate(accelerator: Accelerator, model, dataloader, compute_metrics, prefix: str) -> dict:
    """Loss, accuracy and macro F1 over the whole split: each process scores its shard, `gather_for_metrics`
    collects the logits (dropping the texts repeated to give every process a full last batch), and the loss is
    computed once over all of them, as the model computes it (the problem_type of its config)."""
    model.eval()
    logits, labels = [], []
    for batch in dataloader:
        with torch.no_grad():
            outputs = model(**batch)
        batch_logits, batch_labels = accelerator.gather_for_metrics((outputs.logits.float(), batch["labels"]))
        logits.append(batch_logits.cpu())
        labels.append(batch_labels.cpu())
    model.train()
    logits, labels = torch.cat(logits), torch.cat(labels)  # (N, num_labels), (N,)
    metrics = compute_metrics((logits.numpy(), labels.numpy()))
    unwrapped = accelerator.unwrap_model(model)
    metrics["loss"] = unwrapped.loss_function(labels, logits, unwrapped.config).item()  # the training loss, on all
    return {f"{prefix}_{name}": value for name, value in metrics.items()}


def save_checkpoint(accelerator: Accelerator, training_args, state: LoopState):
    """`output_dir/checkpoint-<step>` by `save_state`; keeps the newest `save_total_limit` checkpoints (and the
    best one, with `load_best_model_at_end`)."""
    folder = str(Path(training_args.output_dir) / f"checkpoint-{state.global_step}")
    if state.best_step == state.global_step:
        state.best_checkpoint = folder  # saved with it, so that a resumed run knows it too
    accelerator.save_state(folder)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        rotate_checkpoints(
            training_args.output_dir,
            save_total_limit=training_args.save_total_limit,
            best_model_checkpoint=state.best_checkpoint,
        )


def load_best_model(accelerator: Accelerator, training_args, state: LoopState):
    """With `load_best_model_at_end`: the checkpoint of the best evaluation, as Trainer does (TrainingArguments
    already requires the save and evaluation schedules to match)."""
    if not training_args.load_best_model_at_end:
        return
    if state.best_checkpoint is None:
        logger.warning("load_best_model_at_end: no checkpoint was saved at an evaluation; keeping the last model.")
        return
    name = training_args.metric_for_best_model
    accelerator.print(f"Loading the best model: {state.best_checkpoint} ({name} = {state.best_metric})")
    accelerator.load_state(state.best_checkpoint)


def interval(every: float | None, max_steps: int) -> int | None:
    """A `*_steps` value in steps: TrainingArguments also takes a share of the run (< 1)."""
    if every is None:
        return None
    return max(1, math.ceil(every * max_steps) if every < 1 else int(every))


def is_due(strategy, every: int | None, step: int, end_of_epoch: bool) -> bool:
    """Whether an "epoch" or "steps" schedule (eval_strategy, save_strategy) fires now."""
    strategy = getattr(strategy, "value", strategy)
    if strategy == "epoch":
        return end_of_epoch
    return strategy == "steps" and not end_of_epoch and every is not None and step % every == 0


def train(accelerator, training_args, model, optimizer, train_dataloader, eval_dataloader, compute_metrics) -> dict:
    """The loop: forward, `accelerator.backward`, clipping, optimizer and scheduler steps, logging, evaluation and
    checkpoints; resumable from any checkpoint it wrote."""
    accumulation = training_args.gradient_accumulation_steps
    steps_per_epoch = math.ceil(len(train_dataloader) / accumulation)
    if training_args.max_steps > 0:
        max_steps = training_args.max_steps
    else:
        max_steps = math.ceil(training_args.num_train_epochs * steps_per_epoch)
    num_epochs = math.ceil(max_steps / steps_per_epoch)
    # Not passed to `prepare`: stepped once per optimizer step, a schedule in optimizer steps (as Trainer's).
    scheduler = get_scheduler(
        training_args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=training_args.get_warmup_steps(max_steps),
        num_training_steps=max_steps,
        scheduler_specific_kwargs=training_args.lr_scheduler_kwargs or {},
    )
    logging_steps, eval_steps, save_steps = (
        interval(every, max_steps)
        for every in (training_args.logging_steps, training_args.eval_steps, training_args.save_steps)
    )
    state = LoopState()
    accelerator.register_for_checkpointing(scheduler, state)

    checkpoint = last_checkpoint(training_args)
    if checkpoint is not None:
        accelerator.print(f"Resuming from {checkpoint}")
        accelerator.load_state(checkpoint)

    total_batch = training_args.per_device_train_batch_size * accelerator.num_processes * accumulation
    accelerator.print(
        f"Training: {len(train_dataloader.dataset)} texts, {accelerator.num_processes} process(es) "
        f"({accelerator.distributed_type}), global batch {total_batch}, {max_steps} optimizer steps, "
        f"starting at step {state.global_step}"
    )
    progress = tqdm(
        total=max_steps,
        initial=state.global_step,
        desc="train",
        disable=not accelerator.is_local_main_process or training_args.disable_tqdm,
    )
    model.train()
    running_loss, running_batches, history, start = torch.zeros((), device=accelerator.device), 0, [], time.time()
    first_epoch = state.global_step // steps_per_epoch
    for epoch in range(first_epoch, num_epochs):
        train_dataloader.set_epoch(epoch)  # the seedable sampler's permutation for this epoch
        batches = train_dataloader
        done_in_epoch = state.global_step - epoch * steps_per_epoch
        if done_in_epoch > 0:  # resuming mid-epoch: the same permutation, minus the batches already seen
            batches = accelerator.skip_first_batches(train_dataloader, done_in_epoch * accumulation)
        for batch in batches:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                if accelerator.sync_gradients and training_args.max_grad_norm > 0:
                    clip_gradients(accelerator, model, training_args.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            running_loss += loss.detach().float()
            running_batches += 1
            if not accelerator.sync_gradients:
                continue
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            state.global_step += 1
            progress.update(1)
            step = state.global_step

            if step % logging_steps == 0 or step == max_steps:
                mean_loss = accelerator.reduce(running_loss, reduction="mean").item() / running_batches
                logs = {"loss": mean_loss, "learning_rate": scheduler.get_last_lr()[0], "epoch": step / steps_per_epoch}
                running_loss.zero_()
                running_batches = 0
                history.append({**logs, "step": step})
                progress.set_postfix(loss=f"{mean_loss:.4f}")
                accelerator.log(logs, step=step)
            if is_due(training_args.eval_strategy, eval_steps, step, end_of_epoch=False):
                metrics = evaluate(accelerator, model, eval_dataloader, compute_metrics, "eval")
                accelerator.print(f"step {step}: {metrics}")
                accelerator.log(metrics, step=step)
                state.record_evaluation(training_args, metrics, step)
            if is_due(training_args.save_strategy, save_steps, step, end_of_epoch=False):
                save_checkpoint(accelerator, training_args, state)
            if step >= max_steps:
                break

        if is_due(training_args.eval_strategy, None, state.global_step, end_of_epoch=True):
            metrics = evaluate(accelerator, model, eval_dataloader, compute_metrics, "eval")
            accelerator.print(f"epoch {epoch + 1}: {metrics}")
            accelerator.log(metrics, step=state.global_step)
            state.record_evaluation(training_args, metrics, state.global_step)
        if is_due(training_args.save_strategy, None, state.global_step, end_of_epoch=True):
            save_checkpoint(accelerator, training_args, state)
        if state.global_step >= max_steps:
            break
    progress.close()
    runtime = time.time() - start
    steps_done = state.global_step
    load_best_model(accelerator, training_args, state)
    return {
        "train_loss": history[-1]["loss"] if history else float("nan"),
        "train_runtime": runtime,
        "train_steps": steps_done,
        "train_log_history": history,
    }


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args, schedule_args = parse_classification_arguments(
        sys.argv[1:] if argv is None else argv
    )
    accelerator = build_accelerator(training_args)
    refuse_what_this_loop_cannot_honour(training_args, data_args)
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    if not accelerator.is_local_main_process:
        logging.getLogger().setLevel(logging.WARNING)
    warn_if_setup_ignored(accelerator)
    set_seed(training_args.seed)

    # The others read the tokenized splits from the datasets cache (`main_process_first` inside).
    model, tokenizer, tokenized, label_names = prepare_model_and_data(
        model_args, data_args, training_args, schedule_args
    )
    if training_args.sparse_embeddings:  # before `prepare` wraps the model in DDP, which must know
        sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        enable_sparse_embeddings(model, sharded=sharded)

    collator = DataCollatorWithPadding(tokenizer)  # pads each batch to its longest text
    train_dataloader = train_dataloader_for(tokenized["train"], training_args, collator)
    eval_options = {"collate_fn": collator, "num_workers": training_args.dataloader_num_workers}
    eval_dataloaders = [
        DataLoader(tokenized[split], batch_size=training_args.per_device_eval_batch_size, **eval_options)
        for split in ("validation", "test")
    ]
    optimizer = create_wave_optimizer(model, training_args)
    model, optimizer, train_dataloader, validation_dataloader, test_dataloader = accelerator.prepare(
        model, optimizer, train_dataloader, *eval_dataloaders
    )
    compute_metrics = build_compute_metrics(len(label_names))
    if accelerator.log_with:  # report_to: tensorboard, wandb, ... ("none": no trackers)
        accelerator.init_trackers(Path(training_args.output_dir).name, config=training_args.to_sanitized_dict())

    results = {}
    if training_args.do_train:
        loaders = (train_dataloader, validation_dataloader)
        results.update(train(accelerator, training_args, model, optimizer, *loaders, compute_metrics))
        # The full (gathered) state dict even under FSDP / DeepSpeed, written with config, code and tokenizer.
        accelerator.wait_for_everyone()
        accelerator.unwrap_model(model).save_pretrained(
            training_args.output_dir,
            is_main_process=accelerator.is_main_process,
            save_function=accelerator.save,
            state_dict=accelerator.get_state_dict(model),
        )
        if accelerator.is_main_process:
            tokenizer.save_pretrained(training_args.output_dir)

    for prefix, dataloader in (("eval", validation_dataloader), ("test", test_dataloader)):
        metrics = evaluate(accelerator, model, dataloader, compute_metrics, prefix)
        metrics[f"{prefix}_samples"] = len(dataloader.dataset)
        accelerator.print(f"{prefix}: {metrics}")
        accelerator.log(metrics, step=results.get("train_steps"))
        results.update(metrics)
    if accelerator.is_main_process:
        output_dir = Path(training_args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        summary = {k: v for k, v in results.items() if k != "train_log_history"}
        (output_dir / "all_results.json").write_text(json.dumps(summary, indent=2) + "\n")
        (output_dir / "log_history.json").write_text(json.dumps(results.get("train_log_history", []), indent=2) + "\n")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    main()
