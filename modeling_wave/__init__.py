"""The Wave Network (arXiv 2411.02674) as a Hugging Face Transformers model.

Importing this package registers the Wave classes with the Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`, `AutoModelForMaskedLM`,
`AutoModelForCausalLM`), so that `from_pretrained` works on Wave checkpoints without `trust_remote_code`.

The training API (`WaveTrainer`, `WaveTrainingArguments`, `LazyAdamW`, `create_wave_optimizer`, ...; modules
`trainer_wave` and `optimization_wave`) is imported on first use: it needs `Trainer`, hence Accelerate, which the
model alone does not.
"""
import importlib
import importlib.util

# ruff: noqa: F405

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_wave import WaveConfig, WaveConfigError
from .modeling_wave import *  # noqa: F403  (the classes of modeling_wave.__all__; F405 below)
from .modeling_wave import __all__ as _model_classes

__version__ = "0.1.0"

AutoConfig.register(WaveConfig.model_type, WaveConfig, exist_ok=True)
AutoModel.register(WaveConfig, WaveModel, exist_ok=True)
AutoModelForSequenceClassification.register(WaveConfig, WaveForSequenceClassification, exist_ok=True)
AutoModelForTokenClassification.register(WaveConfig, WaveForTokenClassification, exist_ok=True)
AutoModelForMaskedLM.register(WaveConfig, WaveForMaskedLM, exist_ok=True)
AutoModelForCausalLM.register(WaveConfig, WaveForCausalLM, exist_ok=True)

# Name -> module of the training API, imported when first asked for (PEP 562).
_TRAINING_API = {
    "WaveTrainer": "trainer_wave",
    "WaveTrainingArguments": "trainer_wave",
    "init_word_embeddings": "trainer_wave",
    "distillation_loss": "trainer_wave",
    "LazyAdamW": "optimization_wave",
    "WaveSchedule": "optimization_wave",
    "clip_grad_norm_sparse_aware_": "optimization_wave",
    "create_wave_optimizer": "optimization_wave",
    "enable_sparse_embeddings": "optimization_wave",
    "has_sparse_gradients": "optimization_wave",
    "sparse_gradient_parameters": "optimization_wave",
    "wave_parameter_groups": "optimization_wave",
    "wave_schedule": "optimization_wave",
}


def __getattr__(name: str):
    if name not in _TRAINING_API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if importlib.util.find_spec("accelerate") is None:  # transformers' own message does not name it
        raise ImportError(
            f"modeling_wave.{name} is training API: it needs transformers' Trainer, which needs accelerate. "
            "Install it with `pip install accelerate` (or `pip install modeling-wave[examples]`)."
        )
    return getattr(importlib.import_module(f".{_TRAINING_API[name]}", __name__), name)


__all__ = ["WaveConfig", "WaveConfigError", *_model_classes, *_TRAINING_API]
