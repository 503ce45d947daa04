"""`--schedule data`: the recipe's schedule derived from the training set (`modeling_wave.wave_schedule`, which a
script of one's own calls too), applied to the examples' arguments. The derived values are logged when a run starts;
every option that the preset or the command line set to something other than its default is left alone.
"""

import logging
import math
from dataclasses import asdict, fields

from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy

from modeling_wave import wave_schedule

from wave_examples.arguments import DataArguments, ScheduleArguments

logger = logging.getLogger(__name__)


def derive_schedule(
    lengths: list[int], args: ScheduleArguments, training_args: TrainingArguments, eval_tokens: int = 0
) -> dict:
    """`wave_schedule` with the options of `ScheduleArguments` and the global batch of `training_args`."""
    batch = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
    batch *= max(1, training_args.world_size)
    options = {f.name: getattr(args, f.name) for f in fields(ScheduleArguments) if f.name != "schedule"}
    return asdict(wave_schedule(lengths, batch, eval_tokens=eval_tokens, **options))


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
