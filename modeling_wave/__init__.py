"""The Wave Network (arXiv 2411.02674) as a Hugging Face Transformers model.

Importing this package registers the Wave classes with the Auto classes (`AutoConfig`, `AutoModel`,
`AutoModelForSequenceClassification`), so that `from_pretrained` works on Wave checkpoints without
`trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_wave import WaveConfig
from .modeling_wave import WaveForSequenceClassification, WaveModel, WavePreTrainedModel

__version__ = "0.1.0"

AutoConfig.register(WaveConfig.model_type, WaveConfig, exist_ok=True)
AutoModel.register(WaveConfig, WaveModel, exist_ok=True)
AutoModelForSequenceClassification.register(WaveConfig, WaveForSequenceClassification, exist_ok=True)

__all__ = ["WaveConfig", "WaveForSequenceClassification", "WaveModel", "WavePreTrainedModel"]
