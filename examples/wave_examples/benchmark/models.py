"""The models under test: recipes of the models the issue names, building them (`--quick` shrinks them), and
`ModelUnderTest`, one model with its optimiser and synthetic batches that takes training steps and inference passes."""

from contextlib import nullcontext
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from modeling_wave import WaveConfig, WaveForSequenceClassification
from wave_examples import repo_path
from wave_examples.flops import bert_flops, train_step_flops, wave_flops
from wave_examples.hub import resolve_pretrained_path

# The models the issue names. "wave" recipes read a Wave config from configuration/; "bert" recipes build a randomly
# initialised BertForSequenceClassification; "pretrained" loads a checkpoint folder (all-MiniLM-L6-v2).
MODEL_RECIPES = {
    "wave-modulation": {
        "label": "Wave, modulation",
        "family": "wave",
        "config": "configuration/models/wave-modulation-base.json",
    },
    "wave-interference": {
        "label": "Wave, interference",
        "family": "wave",
        "config": "configuration/models/wave-interference-base.json",
    },
    "wave-modulation-eager": {  # the autograd reference of the wave, to measure what WaveFusedFunction gains
        "label": "Wave, modulation (eager wave)",
        "family": "wave",
        "config": "configuration/models/wave-modulation-base.json",
        "overrides": {"wave_implementation": "eager"},
        "default": False,  # measured when named (configuration/benchmark/benchmark-cpu.json does)
    },
    "transformer-1layer": {
        "label": "1-layer Transformer",
        "family": "bert",
        "config": {"num_hidden_layers": 1, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    },
    "bert-base": {
        "label": "BERT-base size",
        "family": "bert",
        "config": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    },
    "minilm": {"label": "all-MiniLM-L6-v2", "family": "pretrained", "path": "sentence-transformers/all-MiniLM-L6-v2"},
}
DEFAULT_MODELS = [name for name, recipe in MODEL_RECIPES.items() if recipe.get("default", True)]
# --quick shrinks every model to this size (same depth and structure), so that the whole run takes seconds.
QUICK_SIZE = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 128, "vocab_size": 512}
DESCRIBED_CONFIG = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads", "vocab_size",
                    "max_position_embeddings", "wave_mode", "wave_readout")  # fmt: skip


def recipe_of(name: str) -> dict:
    if name in MODEL_RECIPES:
        return MODEL_RECIPES[name]
    if name.endswith(".json"):  # any Wave config file can be benchmarked too
        return {"label": Path(name).stem, "family": "wave", "config": name}
    raise ValueError(f"Unknown model {name!r}: use one of {', '.join(MODEL_RECIPES)} or a Wave config .json file.")


def model_config(name: str, settings: dict, max_positions: int):
    """The config of model `name`: its recipe, shrunk by --quick, with a position table of `max_positions`."""
    recipe = recipe_of(name)
    quick = settings["quick"]
    if recipe["family"] == "wave":
        config = WaveConfig.from_json_file(str(repo_path(recipe["config"])))
        config.update(recipe.get("overrides", {}))
        if quick:
            config.hidden_size, config.vocab_size = QUICK_SIZE["hidden_size"], QUICK_SIZE["vocab_size"]
            if config.intermediate_size > 0:
                config.intermediate_size = QUICK_SIZE["intermediate_size"]
        if config.position_embedding_type == "learned":
            config.max_position_embeddings = max(config.max_position_embeddings, max_positions)
        config.num_labels = 2
        return config
    if recipe["family"] == "bert":
        fields = dict(recipe["config"])
        if quick:
            fields.update(
                {k: QUICK_SIZE[k] for k in ("hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")}
            )
        return BertConfig(**fields, max_position_embeddings=max(512, max_positions), num_labels=2)
    config = AutoConfig.from_pretrained(resolve_pretrained_path(recipe["path"]), num_labels=2)
    if quick:  # same depth and structure, random weights: the pretrained weights only matter at full size
        for key, value in QUICK_SIZE.items():
            setattr(config, key, value)
    return config


def build_model(name: str, settings: dict, max_positions: int, device: torch.device):
    """Model `name` in train mode on `device`, float32 weights (bfloat16 runs under autocast), seeded."""
    torch.manual_seed(settings["seed"])
    recipe = recipe_of(name)
    config = model_config(name, settings, max_positions)
    if recipe["family"] == "wave":
        model = WaveForSequenceClassification(config)
    elif recipe["family"] == "bert" or settings["quick"]:
        config._attn_implementation = "sdpa"
        model = (
            BertForSequenceClassification(config)
            if recipe["family"] == "bert"
            else AutoModelForSequenceClassification.from_config(config)
        )
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_pretrained_path(recipe["path"]), num_labels=2
        )
    return model.to(device).train()


def length_cap(name: str, config, settings: dict) -> tuple[int | None, str | None]:
    """The longest input a model may get in the sweep, and why (position table or a preset cap)."""
    caps = []
    if settings["max_lengths"].get(name):
        caps.append((int(settings["max_lengths"][name]), "capped by the preset (max_lengths)"))
    if recipe_of(name)["family"] == "pretrained":
        caps.append((config.max_position_embeddings, "pretrained position table"))
    if not caps:
        return None, None
    length, reason = min(caps)
    return length, f"{reason}: max {length} tokens"


def parameter_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    embedding = sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Embedding))
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def make_optimizer(model, device: torch.device):
    # Trainer's default in transformers 5 is adamw_torch_fused; the fused kernel exists on CPU and CUDA.
    return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda"))


class ModelUnderTest:
    """One model, its optimiser and its synthetic batches; takes a training step and an inference pass."""

    def __init__(self, name: str, settings: dict, max_positions: int, device: torch.device):
        self.name, self.device, self.settings = name, device, settings
        self.label = recipe_of(name)["label"]
        self.model = build_model(name, settings, max_positions, device)
        self.config = self.model.config
        self.optimizer = make_optimizer(self.model, device)
        # --compile: the warm-up rounds absorb the compilation (one per input shape; the sweep recompiles per length)
        self.forward = torch.compile(self.model) if settings["compile"] else self.model
        self.autocast_dtype = torch.bfloat16 if settings["dtype"] == "bfloat16" else None
        self.max_length, self.cap_reason = length_cap(name, self.config, settings)
        self._batches, self._drawn = {}, 0

    def batch(self, batch_size: int, length: int, fresh: bool = False) -> dict:
        """Synthetic ids (never the pad id), a full attention mask and random binary labels."""
        key = (batch_size, length)
        if fresh or key not in self._batches:
            self._drawn += 1  # every fresh batch differs; the cached one per shape is the first drawn
            generator = torch.Generator().manual_seed(self.settings["seed"] * 1_000_003 + self._drawn)
            batch = {
                "input_ids": torch.randint(1, self.config.vocab_size, (batch_size, length), generator=generator),
                "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
                "labels": torch.randint(0, 2, (batch_size,), generator=generator),
            }
            batch = {k: v.to(self.device) for k, v in batch.items()}
            if fresh:
                return batch
            self._batches[key] = batch
        return self._batches[key]

    def autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batch: dict):
        with self.autocast():
            loss = self.forward(**batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def inference(self, batch: dict):
        with torch.inference_mode(), self.autocast():
            self.forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

    def describe(self) -> dict:
        """What the report says about the model: label, family, size and the config fields that set its cost."""
        return {
            "label": self.label,
            "family": recipe_of(self.name)["family"],
            "model_type": self.config.model_type,
            "parameters": parameter_counts(self.model),
            "config": {key: getattr(self.config, key, None) for key in DESCRIBED_CONFIG},
        }

    def flops(self, batch_size: int, length: int) -> dict:
        """Analytic FLOPs (`wave_examples.flops`) of a forward pass and a training step at this shape."""
        counts = (wave_flops if self.config.model_type == "wave" else bert_flops)(self.config, batch_size, length)
        return train_step_flops(counts, parameter_counts(self.model)["total"])

    def release(self):
        del self.model, self.forward, self.optimizer, self._batches
