"""A training schedule that follows the data (`--schedule data`): how long a text may be, how many updates, how often
to evaluate. One function derives all of it from the training set, logs it when a run starts, and leaves alone every
option that the preset or the command line set to something other than its default.

    updates  = steps per epoch x epochs, epochs = min_updates / steps per epoch, clipped to [1, max_epochs] and to the
               token budget (max_train_tokens / tokens per epoch, at least 1 epoch)
    evaluate = every updates / evaluations steps, keeping the checkpoint best on validation, with as many evaluations
               as `eval_share` of the training tokens pays for (at most `evaluations`); one or none: no evaluation
               during training (the model of the last update is the one evaluated)
    length   = the length that keeps `length_coverage` of the training texts whole, capped by the model's positions

A small set (TREC: 68 updates an epoch at batch 64) gets many epochs; a large one (IMDB: 313 updates) gets one or
two, and long texts get fewer than short ones. The values of the defaults were chosen on validation
(docs/recipe.md).
"""

import logging
import math
from dataclasses import fields

import numpy as np
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from wave_examples.arguments import DataArguments, ScheduleArguments

logger = logging.getLogger(__name__)


def covering_length(lengths, coverage: float, cap: int) -> int:
    """The smallest length (a multiple of 8) that keeps `coverage` of the texts whole, at most `cap`."""
    length = int(np.quantile(np.asarray(lengths), coverage, method="higher"))
    return min(cap, 8 * math.ceil(length / 8))


def derive_schedule(
    lengths: list[int], args: ScheduleArguments, training_args: TrainingArguments, eval_tokens: int = 0
) -> dict:
    """The derived values for a training set whose (already capped) token lengths are `lengths`, and a validation set
    of `eval_tokens` tokens."""
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    batch *= max(1, training_args.world_size)
    steps_per_epoch = math.ceil(len(lengths) / batch)
    epochs = min(args.max_epochs, max(1.0, args.min_updates / steps_per_epoch))
    epochs = min(epochs, max(1.0, args.max_train_tokens / sum(lengths)))
    max_steps = math.ceil(epochs * steps_per_epoch)
    affordable = args.evaluations if not eval_tokens else int(args.eval_share * epochs * sum(lengths) / eval_tokens)
    evaluations = min(args.evaluations, affordable)
    eval_steps = math.ceil(max_steps / evaluations) if evaluations >= 2 else None
    return {
        "max_seq_length": covering_length(lengths, args.length_coverage, cap=max(lengths)),
        "max_steps": max_steps,
        "epochs": max_steps / steps_per_epoch,
        "eval_steps": eval_steps,
    }


def apply_schedule(
    lengths: list[int],
    args: ScheduleArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    cap: int,
    eval_lengths: list[int] = (),
) -> int:
    """Derive the schedule (`--schedule data`) from the token lengths of the training texts (and of the validation
    texts, for the evaluations it affords), set what was left at its default, log it; the max_seq_length to use."""
    if args.schedule == "fixed":
        return data_args.max_seq_length
    capped = [min(n, cap) for n in lengths]
    derived = derive_schedule(capped, args, training_args, eval_tokens=sum(min(n, cap) for n in eval_lengths))
    defaults = {f.name: f.default for f in fields(TrainingArguments)}
    kept = []
    if data_args.max_seq_length == DataArguments.max_seq_length:
        data_args.max_seq_length = derived["max_seq_length"]
    else:
        kept.append(f"max_seq_length={data_args.max_seq_length}")
    if training_args.max_steps == defaults["max_steps"] and training_args.num_train_epochs == defaults["num_train_epochs"]:
        training_args.max_steps = derived["max_steps"]
    else:
        kept.append(f"max_steps={training_args.max_steps}, num_train_epochs={training_args.num_train_epochs}")
    if training_args.eval_steps is None and training_args.eval_strategy != IntervalStrategy.NO:
        if derived["eval_steps"] is None:  # no evaluation during training: a checkpoint halfway, for resuming
            training_args.eval_strategy, training_args.load_best_model_at_end = IntervalStrategy.NO, False
            training_args.save_strategy = IntervalStrategy.STEPS
            training_args.save_steps = max(1, math.ceil(training_args.max_steps / 2))
        else:
            training_args.eval_strategy = training_args.save_strategy = IntervalStrategy.STEPS
            training_args.eval_steps = training_args.save_steps = derived["eval_steps"]
    else:
        kept.append(f"eval_strategy={training_args.eval_strategy}, eval_steps={training_args.eval_steps}")
    logger.info(
        f"Schedule derived from {len(lengths):,} training texts: max_seq_length {derived['max_seq_length']} (keeps "
        f"{args.length_coverage:.0%} whole), {derived['max_steps']:,} updates ({derived['epochs']:.1f} epochs), "
        f"{evaluation_text(derived['eval_steps'])}. Given explicitly, kept: {'; '.join(kept) or 'nothing'}."
    )
    return data_args.max_seq_length


def evaluation_text(eval_steps: int | None) -> str:
    if eval_steps is None:
        return "no evaluation during training (too few validation tokens' worth; the last model is kept)"
    return f"evaluation every {eval_steps:,} updates"
