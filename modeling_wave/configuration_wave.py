"""Wave Network configuration (Zhang & Sheng, "Wave Network: An Ultra-Small Language Model", arXiv 2411.02674)."""

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging

logger = logging.get_logger(__name__)

WAVE_MODES = ("modulation", "interference")
WAVE_READOUTS = ("real_imag", "real", "magnitude")
POOLINGS = ("mean", "cls")
WAVE_IMPLEMENTATIONS = ("fused", "eager")
POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal", "none")
MAX_NGRAM_SIZE = 5  # longer n-grams are too rare to learn from, and their hashes would overflow int64
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

# Every checkpoint names all Wave classes, so `trust_remote_code` loading works through each Auto class,
# whichever class was saved (transformers only records the saved class by itself).
WAVE_AUTO_MAP = {
    "AutoConfig": "configuration_wave.WaveConfig",
    "AutoModel": "modeling_wave.WaveModel",
    "AutoModelForSequenceClassification": "modeling_wave.WaveForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_wave.WaveForTokenClassification",
    "AutoModelForMaskedLM": "modeling_wave.WaveForMaskedLM",
    "AutoModelForCausalLM": "modeling_wave.WaveForCausalLM",
}


class WaveConfig(PreTrainedConfig):
    r"""
    Configuration of a Wave Network ([`WaveModel`] and its heads). The defaults give the paper's single-layer,
    768-wide model with the BERT uncased vocabulary.

    Args:
        vocab_size (`int`, defaults to 30522): number of token ids (BERT uncased WordPiece).
        hidden_size (`int`, defaults to 768): width d of token embeddings and waves ("following BERT base").
        num_hidden_layers (`int`, defaults to 1): number of stacked [`WaveLayer`]s (paper Eq. 8); 0 removes the wave
            altogether (a bag of embeddings: the control that shows what the wave adds).
        intermediate_size (`int`, defaults to 3072): width of the feed-forward block after each wave operation;
            0 leaves it out, as the paper's 2.4M-parameter model must have (its two projections and the readout
            g alone hold 2.36M parameters at d = 768).
        hidden_act (`str`, defaults to `"gelu"`): activation of the feed-forward block (any key of `ACT2FN`).
        hidden_dropout_prob (`float`, defaults to 0.1): dropout D of Eq. (8), also on embeddings and feed-forward.
        classifier_dropout (`float`, *optional*): dropout before the classifier; `hidden_dropout_prob` if `None`.
        max_position_embeddings (`int`, defaults to 512): longest input for `position_embedding_type="learned"`.
        position_embedding_type (`str`, defaults to `"learned"`): `"learned"`, `"sinusoidal"` (scaled to the
            embeddings' initial amplitude, any length) or `"none"`.
        wave_mode (`str`, defaults to `"modulation"`): `"modulation"` (complex product, Eqs. 6-7) or
            `"interference"` (complex sum, Eqs. 3-5).
        wave_readout (`str`, defaults to `"real_imag"`): how g of Eq. (8) turns the complex result back into a real
            token vector before its linear map: `"real_imag"` (Re and Im concatenated), `"real"` (Re only) or
            `"magnitude"` (|Z|; refused with modulation, where |Z Z'| = G G' is the same for every token).
        pooling (`str`, defaults to `"mean"`): text vector for the heads: `"mean"` over real tokens or the first real
            token (`"cls"`).
        layer_norm_eps (`float`, defaults to 1e-12): epsilon of the LayerNorms.
        wave_eps (`float`, defaults to 1e-6): added under the square root of the wave's imaginary part, so that
            one-token texts (where G^2 - w^2 = 0) have finite gradients.
        wave_implementation (`str`, defaults to `"fused"`): how the bidirectional wave runs: `"fused"` (one
            autograd function with a hand-derived backward pass: faster, keeps fewer activations) or `"eager"` (plain
            PyTorch ops through autograd, the reference). Both give the same results; the causal wave is always eager.
        ngram_sizes (`list[int]`, defaults to `[]`): hashed n-gram embeddings (fastText's bigram trick) added to
            the token embeddings, e.g. `[2, 3]`: at token t, one embedding per n-gram of the real tokens t-n+1..t,
            hashed from their ids into `ngram_buckets` rows, so tokenizers need nothing new and a causal model never
            looks ahead. Empty: none (the paper's model).
        ngram_buckets (`int`, defaults to 200000): rows of the hashed n-gram embedding table.
        ngram_embedding_size (`int`, *optional*): width of that table; `None` gives `hidden_size`, a smaller width is
            projected up to `hidden_size` (an ALBERT-style factorisation that keeps the table small).
        wide_ngram_sizes (`list[int]`, defaults to `[]`): the n-gram orders of a wide linear part beside the wave in
            [`WaveForSequenceClassification`] (Wide & Deep), e.g. `[1, 2, 3]`: per-class weights of the hashed
            n-grams present in the text, scaled by 1 / sqrt(number of distinct n-grams), added to the logits.
            Empty: no wide part (the paper's model).
        wide_buckets (`int`, defaults to 2097152): rows (hash buckets) of the wide part's weight table, each holding
            `num_labels` weights.
        token_dropout_prob (`float`, defaults to 0.0): while training, the share of real tokens removed from each
            text (masked as padding) before the wave, a regulariser for bag-like models.
        initializer_range (`float`, defaults to 0.02): standard deviation of the normal initialisation.
        pad_token_id (`int`, defaults to 0): id of the padding token ([PAD] in BERT's vocabulary).
        tie_word_embeddings (`bool`, defaults to `True`): the language-model heads ([`WaveForMaskedLM`],
            [`WaveForCausalLM`]) share their output projection with the input token embeddings.
        is_decoder (`bool`, defaults to `False`): causal (left-to-right) wave statistics: the global semantics G_t of
            token t is the norm over tokens 1..t only (a running sum of squares), so no token sees a later one.
            [`WaveForCausalLM`] sets it; the bidirectional G of Eq. (1) over the whole text otherwise.
        use_cache (`bool`, defaults to `True`): with `is_decoder`, return a [`WaveCache`] (the running sums of squares
            of every layer, constant in size) so that generation feeds one new token per step.

    Example:

    ```python
    >>> from modeling_wave import WaveConfig, WaveForSequenceClassification
    >>> config = WaveConfig(wave_mode="interference", num_labels=4)
    >>> model = WaveForSequenceClassification(config)
    ```
    """

    model_type = "wave"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 1
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    classifier_dropout: float | int | None = None
    max_position_embeddings: int = 512
    position_embedding_type: str = "learned"
    wave_mode: str = "modulation"
    wave_readout: str = "real_imag"
    pooling: str = "mean"
    layer_norm_eps: float = 1e-12
    wave_eps: float = 1e-6
    wave_implementation: str = "fused"
    ngram_sizes: list[int] | tuple[int, ...] = ()
    ngram_buckets: int = 200_000
    ngram_embedding_size: int | None = None
    wide_ngram_sizes: list[int] | tuple[int, ...] = ()
    wide_buckets: int = 2_097_152
    token_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True
    is_decoder: bool = False
    use_cache: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.auto_map = {**WAVE_AUTO_MAP, **(getattr(self, "auto_map", None) or {})}
        self.check_wave_fields()

    def check_wave_fields(self):
        """Raise a `ValueError` naming the first field whose value the Wave Network cannot use."""
        _check_choice("wave_mode", self.wave_mode, WAVE_MODES)
        _check_choice("wave_readout", self.wave_readout, WAVE_READOUTS)
        _check_choice("pooling", self.pooling, POOLINGS)
        _check_choice("wave_implementation", self.wave_implementation, WAVE_IMPLEMENTATIONS)
        _check_choice("position_embedding_type", self.position_embedding_type, POSITION_EMBEDDING_TYPES)
        _check_choice("hidden_act", self.hidden_act, tuple(ACT2FN))
        if self.problem_type is not None:  # the loss of `WaveForSequenceClassification`; None: chosen from the labels
            _check_choice("problem_type", self.problem_type, PROBLEM_TYPES)
        for name in ("is_decoder", "use_cache", "tie_word_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        for name in ("ngram_sizes", "wide_ngram_sizes"):
            _check_ngram_sizes(name, getattr(self, name), smallest=2 if name == "ngram_sizes" else 1)
        if self.ngram_embedding_size is not None:
            _check_positive_int("ngram_embedding_size", self.ngram_embedding_size)
        for name in ("vocab_size", "hidden_size", "max_position_embeddings", "ngram_buckets", "wide_buckets"):
            _check_positive_int(name, getattr(self, name))
        for name, zero_means in (("intermediate_size", "no feed-forward block"), ("num_hidden_layers", "no Wave layer")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"`{name}` must be an integer >= 0, got {value!r}.")
            if value < 0:
                raise ValueError(f"`{name}` must be >= 0 (0: {zero_means}), got {value}.")
        for name in ("layer_norm_eps", "wave_eps", "initializer_range"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)!r}.")
        for name in ("hidden_dropout_prob", "classifier_dropout", "token_dropout_prob"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}.")
        if self.wave_mode == "modulation" and self.wave_readout == "magnitude":
            raise ValueError(
                '`wave_readout="magnitude"` cannot be used with `wave_mode="modulation"`: |Z Z\'| = G G\' is the same '
                'for every token of a text, so all token information is lost. Use "real_imag" or "real".'
            )
        if self.wave_mode == "interference" and self.wave_readout == "real":
            logger.warning_once(
                'wave_mode="interference" with wave_readout="real" reads out w + w\' only: no token sees any other '
                'token. Use "real_imag" or "magnitude" for a Wave Network that mixes tokens.'
            )


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def _check_ngram_sizes(name, sizes, smallest):
    if not isinstance(sizes, (list, tuple)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and smallest <= n <= MAX_NGRAM_SIZE for n in sizes
    ):
        raise ValueError(
            f"`{name}` must be a list of n-gram orders, integers in [{smallest}, {MAX_NGRAM_SIZE}], e.g. "
            f"{[2, 3] if smallest == 2 else [1, 2, 3]}; got {sizes!r}."
        )
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"`{name}` lists an n-gram order twice: {sizes!r}.")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


__all__ = ["WaveConfig"]
