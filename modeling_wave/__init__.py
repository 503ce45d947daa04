"""The Wave Network (arXiv 2411.02674) as a Hugging Face Transformers model.

Importing this package registers the Wave classes with the Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`, `AutoModelForMaskedLM`,
`AutoModelForCausalLM`), so that `from_pretrained` works on Wave checkpoints without `trust_remote_code`.
"""
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

__all__ = ["WaveConfig", "WaveConfigError", *_model_classes]
