"""Wave Network configuration (Zhang & Sheng, "Wave Network: An Ultra-Small Language Model", arXiv 2411.02674)."""

from contextlib import contextmanager
from dataclasses import fields
from typing import Any, Literal

from huggingface_hub.dataclasses import strict, validated_field
from huggingface_hub.errors import StrictDataclassError

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging

logger = logging.get_logger(__name__)

WAVE_MODES = ("modulation", "interference")
WAVE_READOUTS = ("real_imag", "real", "magnitude")
POOLINGS = ("mean", "cls")
WAVE_IMPLEMENTATIONS = ("fused", "eager")
POSITION_EMBEDDING_TYPES = ("learned", "sinusoidal", "none")
NGRAM_HASHES = ("universal", "legacy")
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


class WaveConfigError(StrictDataclassError, ValueError):
    """A value that [`WaveConfig`] refuses. `@strict` raises `StrictDataclassError`s, which are not `ValueError`s,
    while Wave code and its callers expect a bad argument to raise a `ValueError`: `WaveConfig` re-raises them as this,
    with the message of the check that failed (it names the field and the value)."""


@contextmanager
def _as_value_error():
    try:
        yield
    except StrictDataclassError as error:
        raise WaveConfigError(str(error.__cause__ or error)) from None


def _raising_value_errors(cls):
    """Class decorator over `@strict`: its checks (`__setattr__` for each field, `validate` for the class validators)
    raise `WaveConfigError`s."""
    strict_setattr, strict_validate = cls.__setattr__, cls.validate

    def __setattr__(self, name, value):
        with _as_value_error():
            strict_setattr(self, name, value)

    def validate(self):
        with _as_value_error():
            strict_validate(self)

    validate.__is_defined_by_strict_decorator__ = True  # so that a subclass may use `@strict` in its turn
    cls.__setattr__, cls.validate = __setattr__, validate
    return cls


def _named_check(check):
    """Turn `check(name, value, **options)` into a factory of `validated_field`s, `factory(name, default, **options)`,
    whose messages name the field (strict passes a field validator the value alone)."""

    def factory(name, default, **options):
        return validated_field(lambda value: check(name, value, **options), default=default)

    return factory


# The field validators. `@strict` runs each after the type check of the field's annotation (so `value` has that type).


@_named_check
def _positive_int(name, value, zero_means=None):
    if value is None:  # where the annotation allows it
        return
    if zero_means is None and value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0 (0: {zero_means}), got {value}.")


@_named_check
def _above_zero(name, value):
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value!r}.")


@_named_check
def _dropout(name, value):
    if value is not None and not 0 <= value < 1:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}.")


@_named_check
def _ngram_orders(name, sizes, smallest):
    # Hand-written type check (these fields are annotated `Any`): strict's for `list[int]` would come first and say
    # only which types it expected, not which n-gram orders are allowed.
    if not isinstance(sizes, (list, tuple)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and smallest <= n <= MAX_NGRAM_SIZE for n in sizes
    ):
        raise ValueError(
            f"`{name}` must be a list of n-gram orders, integers in [{smallest}, {MAX_NGRAM_SIZE}], e.g. "
            f"{[2, 3] if smallest == 2 else [1, 2, 3]}; got {sizes!r}."
        )
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"`{name}` lists an n-gram order twice: {sizes!r}.")


@_raising_value_errors
@strict
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
        ngram_hash (`str`, defaults to `"universal"`): how n-grams are hashed into buckets, for the n-gram embeddings
            and the wide part: `"universal"` (a large multiplier modulo a prime: buckets fill as by a random hash) or
            `"legacy"` (the multiplier 1,000,003, which crowds bigrams into a fraction of the buckets). A saved config
            that has n-grams but no `ngram_hash` (saved before the field existed) loads as `"legacy"`, so that its
            model predicts exactly as before.
        ngram_dropout_prob (`float`, defaults to 0.0): dropout on the summed n-gram embeddings of each token (a
            regulariser for small training sets, where rare n-grams are memorised first).
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

    # Types are checked by `@strict` from the annotations (a `bool` is no `int`), choices by the `Literal`s, ranges by
    # the field validators above, rules between fields by the `validate_*` methods below.
    vocab_size: int = _positive_int("vocab_size", default=30522)
    hidden_size: int = _positive_int("hidden_size", default=768)
    num_hidden_layers: int = _positive_int("num_hidden_layers", default=1, zero_means="no Wave layer")
    intermediate_size: int = _positive_int("intermediate_size", default=3072, zero_means="no feed-forward block")
    hidden_act: Literal[tuple(ACT2FN)] = "gelu"
    hidden_dropout_prob: float | int = _dropout("hidden_dropout_prob", default=0.1)
    classifier_dropout: float | int | None = _dropout("classifier_dropout", default=None)
    max_position_embeddings: int = _positive_int("max_position_embeddings", default=512)
    position_embedding_type: Literal[POSITION_EMBEDDING_TYPES] = "learned"
    wave_mode: Literal[WAVE_MODES] = "modulation"
    wave_readout: Literal[WAVE_READOUTS] = "real_imag"
    pooling: Literal[POOLINGS] = "mean"
    layer_norm_eps: float | int = _above_zero("layer_norm_eps", default=1e-12)
    wave_eps: float | int = _above_zero("wave_eps", default=1e-6)
    wave_implementation: Literal[WAVE_IMPLEMENTATIONS] = "fused"
    ngram_sizes: Any = _ngram_orders("ngram_sizes", default=(), smallest=2)  # a list of ints, see `_ngram_orders`
    ngram_buckets: int = _positive_int("ngram_buckets", default=200_000)
    ngram_embedding_size: int | None = _positive_int("ngram_embedding_size", default=None)
    ngram_hash: Literal[NGRAM_HASHES] = "universal"
    ngram_dropout_prob: float | int = _dropout("ngram_dropout_prob", default=0.0)
    wide_ngram_sizes: Any = _ngram_orders("wide_ngram_sizes", default=(), smallest=1)
    wide_buckets: int = _positive_int("wide_buckets", default=2_097_152)
    token_dropout_prob: float | int = _dropout("token_dropout_prob", default=0.0)
    initializer_range: float | int = _above_zero("initializer_range", default=0.02)
    pad_token_id: int | None = 0
    tie_word_embeddings: bool = True
    is_decoder: bool = False
    use_cache: bool = True
    # PreTrainedConfig's field, declared again to be checked: its annotation there is a string (the module imports
    # `annotations` from `__future__`), which strict leaves unchecked. None: chosen from the labels.
    problem_type: Literal[PROBLEM_TYPES] | None = None

    def __post_init__(self, **kwargs):
        if kwargs.pop("sparse_embeddings", False):
            # Checkpoints of the recipe saved before sparse tables became a training-time switch carry it: dropped, so
            # that the plain Trainer trains them (dense); `WaveTrainer` turns sparse tables on where asked.
            logger.warning_once(
                "`sparse_embeddings` is no longer a config field (a saved model must train with any loop): ignored. "
                "Turn sparse tables on for training with `WaveTrainingArguments(sparse_embeddings=True)` and "
                "`WaveTrainer`, or `model.sparse_embeddings_enable()` in a loop of your own."
            )
        super().__post_init__(**kwargs)
        self.auto_map = {**WAVE_AUTO_MAP, **(getattr(self, "auto_map", None) or {})}

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs) -> "WaveConfig":
        """A saved config with n-grams and no `ngram_hash` was saved before the field existed: its n-grams were
        hashed with the `"legacy"` multiplier, and its weights only fit that hash."""
        if "ngram_hash" not in config_dict and (config_dict.get("ngram_sizes") or config_dict.get("wide_ngram_sizes")):
            config_dict = {**config_dict, "ngram_hash": "legacy"}
        return super().from_dict(config_dict, **kwargs)

    def validate_pad_token_id(self):
        """Part of `@strict`-powered validation (after `__init__`, in `save_pretrained` and in `check_wave_fields`)."""
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"`pad_token_id` must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}.")

    def validate_wave_readout(self):
        """Part of `@strict`-powered validation: the readouts that lose the interaction between tokens."""
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

    def check_wave_fields(self):
        """Raise a `ValueError` naming the first field whose value the Wave Network cannot use.

        `@strict` checks each field when it is set and the rules between fields once `__init__` is done; this runs both
        again, for a config changed since (`update`, assignments, a list changed in place)."""
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name))  # strict's `__setattr__` runs the field's checks
        self.validate()


__all__ = ["WaveConfig", "WaveConfigError"]
