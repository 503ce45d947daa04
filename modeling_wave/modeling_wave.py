"""PyTorch Wave Network.

X. Zhang and V. S. Sheng, "Wave Network: An Ultra-Small Language Model", arXiv 2411.02674 (v4), Sections 3-4.
Every token is a complex vector Z = G exp(i alpha): its magnitude G is the global semantics of the whole text,
its phase alpha how the token relates to it. Two such representations are combined element-wise by
interference (Z + Z') or modulation (Z * Z'), at a cost linear in the sequence length.

A causal Wave Network (`config.is_decoder`, used by `WaveForCausalLM`) gives token t the global semantics of tokens
1..t only: G_t = sqrt(sum_{j<=t} w_j^2), a running sum of squares. Generation then carries just these sums from one
step to the next (`WaveCache`), constant in size, where a Transformer keeps the keys and values of every token.
"""

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    CausalLMOutputWithPast,
    MaskedLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, logging
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple

from .configuration_wave import WaveConfig

logger = logging.get_logger(__name__)

# `generate` passed the cache as `past_key_values` before transformers 5.24, which renamed it `cache`.
accepts_past_key_values = deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")


def sinusoidal_position_embeddings(position_ids: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin/cos position codes (Vaswani et al., 2017) for any position: (B, T) -> (B, T, dim)."""
    frequencies = torch.exp(
        torch.arange(0, dim, 2, device=position_ids.device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    angles = position_ids.unsqueeze(-1).float() * frequencies  # (B, T, ceil(dim / 2))
    return torch.cat([angles.sin(), angles.cos()], dim=-1)[..., :dim]


# Polynomial hashing of n-grams of token ids modulo a prime: h = (h * multiplier + id + 1) mod prime, token by token,
# then h mod buckets. Every intermediate value stays below 2**62, far from int64 overflow.
NGRAM_HASH_PRIME = 2**31 - 1
NGRAM_HASH_MULTIPLIERS = {
    # A large multiplier modulo the prime (Carter-Wegman universal hashing): buckets filled as by a random hash.
    "universal": 1_566_083_941,
    # Checkpoints saved before `config.ngram_hash` existed. 1,000,003 is 3 modulo 200,000 buckets, so a bigram (a, b)
    # lands near bucket 3a + b: 88.9% of IMDB's bigram occurrences share a bucket, against 64.5% for a random hash
    # (examples/ngram_hash_spread.py).
    "legacy": 1_000_003,
}


def shift_right(x: torch.Tensor, steps: int, fill) -> torch.Tensor:
    """x[:, t - steps] at position t, `fill` where t < steps: (B, T) -> (B, T)."""
    if steps == 0:
        return x
    return nn.functional.pad(x, (steps, 0), value=fill)[:, : x.shape[1]]  # no slice that a short text could empty


def hash_ngrams(input_ids: torch.Tensor, real_tokens: torch.Tensor, n: int, buckets: int, method: str = "universal"):
    """Bucket ids of the n-grams that *end* at every token, and whether each exists: (B, T) -> (B, T), (B, T).

    The n-gram at t is tokens t-n+1..t; it exists where all of them are real tokens, so pads (left or right) never
    enter one, and in a causal model the n-gram at t uses tokens up to t only (fastText's hashing trick, computed
    from `input_ids` inside the model so that tokenizers and pipelines need nothing new). `method` is
    `config.ngram_hash`, a key of `NGRAM_HASH_MULTIPLIERS`.
    """
    multiplier = NGRAM_HASH_MULTIPLIERS[method]
    input_ids = input_ids.long()  # int32 ids would overflow in the products
    hashed = torch.full_like(input_ids, n)  # the order seeds the hash: a bigram and a trigram differ
    exists = real_tokens
    for back in range(n - 1, -1, -1):  # from the oldest token of the n-gram to the newest
        hashed = (hashed * multiplier + shift_right(input_ids, back, 0) + 1) % NGRAM_HASH_PRIME
        exists = exists & shift_right(real_tokens, back, False)
    return hashed % buckets, exists


class WaveEmbeddings(nn.Module):
    """Token embeddings plus a position encoding (paper Fig. 6a), and optionally hashed n-gram embeddings
    (`config.ngram_sizes`, not in the paper): the embedding of every n-gram that ends at a token is added to it."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embedding_type = config.position_embedding_type
        if config.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        # Unit-amplitude sinusoids would swamp token embeddings initialised at std `initializer_range`.
        self.sinusoidal_scale = config.initializer_range
        self.ngram_sizes = list(config.ngram_sizes)
        self.ngram_buckets = config.ngram_buckets
        self.ngram_hash = config.ngram_hash
        if self.ngram_sizes:
            ngram_width = config.ngram_embedding_size or config.hidden_size
            self.ngram_embeddings = nn.Embedding(config.ngram_buckets, ngram_width)
            self.ngram_projection = (
                nn.Linear(ngram_width, config.hidden_size, bias=False) if ngram_width != config.hidden_size else None
            )
            # A dropout of their own: on small sets, rare n-grams are what a model memorises first.
            self.ngram_dropout = nn.Dropout(config.ngram_dropout_prob)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

        # How many earlier tokens the n-grams of a new token reach back to: a `WaveCache` stores that many.
        self.ngram_context = max(self.ngram_sizes, default=1) - 1

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None, token_mask=None, cache=None):
        """(B, T) ids or (B, T, D) `inputs_embeds` -> (B, T, D). `token_mask` (B, T) marks the real tokens (None: all);
        a `cache` holds the tokens before `input_ids`, for the n-grams that reach back into them."""
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        if self.position_embedding_type == "learned":
            embeddings = embeddings + self.position_embeddings(position_ids)
        elif self.position_embedding_type == "sinusoidal":
            positions = sinusoidal_position_embeddings(position_ids, embeddings.shape[-1])
            embeddings = embeddings + self.sinusoidal_scale * positions.to(embeddings.dtype)
        if self.ngram_sizes:
            real_tokens = torch.ones_like(input_ids, dtype=torch.bool) if token_mask is None else token_mask
            input_ids, real_tokens = self._with_past_tokens(input_ids, real_tokens, cache)
            embeddings = embeddings + self.ngram_embedding(input_ids, real_tokens, new_length=embeddings.shape[1])
        return self.dropout(embeddings)

    def _with_past_tokens(self, input_ids, real_tokens, cache):
        """The ids and real-token flags with the cache's last `ngram_context` tokens before them, (B, C + T); the
        cache keeps the last `ngram_context` of these for the next call."""
        if cache is None or self.ngram_context == 0:
            return input_ids, real_tokens
        if cache.past_tokens is not None:
            input_ids = torch.cat([cache.past_tokens[0], input_ids], dim=1)
            real_tokens = torch.cat([cache.past_tokens[1], real_tokens], dim=1)
        missing = self.ngram_context - input_ids.shape[1]  # a first prompt shorter than the context
        if missing > 0:
            kept_ids = torch.cat([input_ids.new_zeros(input_ids.shape[0], missing), input_ids], dim=1)
            kept_flags = torch.cat([real_tokens.new_zeros(real_tokens.shape[0], missing), real_tokens], dim=1)
        else:
            kept_ids, kept_flags = input_ids, real_tokens
        cache.past_tokens = (kept_ids[:, -self.ngram_context :], kept_flags[:, -self.ngram_context :])
        return input_ids, real_tokens

    def ngram_embedding(self, input_ids, real_tokens, new_length=None) -> torch.Tensor:
        """Sum of the embeddings of the n-grams ending at each of the last `new_length` tokens (default: all),
        (B, T) -> (B, new_length, D); n-grams with a token that is not real (a pad, a dropped token) are left out."""
        new_length = new_length or input_ids.shape[1]
        ngrams = 0
        for n in self.ngram_sizes:
            buckets, exists = hash_ngrams(input_ids, real_tokens, n, self.ngram_buckets, self.ngram_hash)
            buckets, exists = buckets[:, -new_length:], exists[:, -new_length:]  # (B, T) of the new tokens
            ngrams = ngrams + self.ngram_embeddings(buckets) * exists.unsqueeze(-1)  # (B, T, width)
        if self.ngram_projection is not None:
            ngrams = self.ngram_projection(ngrams)
        return self.ngram_dropout(ngrams)


def global_energy(
    w: torch.Tensor, causal: bool = False, past_energy: torch.Tensor | None = None
) -> torch.Tensor:
    """G^2 of Eq. (1) as each token sees it: G_k^2 = sum_j w_{j,k}^2, over the *tokens*, one value per dimension.

    Bidirectional: the sum over the whole text, (B, T, D) -> (B, 1, D). Causal: the running (prefix) sum over tokens
    1..t, (B, T, D) -> (B, T, D), plus `past_energy` (B, D), the sum over the tokens of earlier calls (`WaveCache`).
    A global G in a causal model would leak the future. Pads must be zero in `w`: they then add exactly nothing.
    """
    energy = w.square()  # (B, T, D)
    if not causal:
        return energy.sum(dim=1, keepdim=True)  # (B, 1, D)
    prefix_energy = energy.cumsum(dim=1)  # (B, T, D): G_t^2 over tokens 1..t
    return prefix_energy if past_energy is None else prefix_energy + past_energy.unsqueeze(1)


def wave_context(w: torch.Tensor, eps: float, total_energy: torch.Tensor | None = None) -> torch.Tensor:
    """Imaginary part s = G sin(alpha) of a token wave, from its real part w (paper Eqs. 1-2).

    Eq. (1): G_k = sqrt(sum_j w_{j,k}^2), the L2 norm over the *tokens* of the text, one value per dimension;
             `total_energy` is G^2 from `global_energy` (over the whole text if None).
    Eq. (2): alpha = arctan2(sqrt(1 - (w/G)^2), w/G), so G cos(alpha) = w and
             G sin(alpha) = sqrt(G^2 - w^2) = sqrt(energy of all the other tokens in that dimension).

    Pads must already be zero in `w` so that G counts real tokens only; `eps` keeps the gradient of the square
    root finite where one token holds all of a dimension's energy (G^2 - w^2 = 0, e.g. any one-token text).
    """
    if total_energy is None:
        total_energy = global_energy(w)  # (B, 1, D): G^2, Eq. (1)
    return torch.sqrt((total_energy - w.square()).clamp_min(0) + eps)


def wave_operation(
    w: torch.Tensor, w_prime: torch.Tensor, mode: str, eps: float = 1e-6, energy: torch.Tensor | None = None
):
    """Combine the waves Z = w + i s and Z' = w' + i s' of two token variants, without trigonometry.

    Z_j = G exp(i alpha_j) (Eqs. 1-2) equals w_j + i s_j with s from `wave_context`, so
        interference, Eqs. (3)-(5):  Z + Z' = (w + w')        + i (s + s')
        modulation,   Eqs. (6)-(7):  Z * Z' = (w w' - s s')   + i (w s' + w' s)
    (magnitudes multiply, G G', and phases add, alpha + alpha'). Inputs are (B, T, D) with pads zeroed;
    returns the real and imaginary parts, each (B, T, D). `energy` holds G^2 of w and w' side by side,
    (B, 1 or T, 2D), e.g. the prefix sums of a causal model; None: Eq. (1) over the whole text.
    """
    energy, energy_prime = (None, None) if energy is None else energy.chunk(2, dim=-1)
    s, s_prime = wave_context(w, eps, energy), wave_context(w_prime, eps, energy_prime)
    return combine_waves(w, w_prime, s, s_prime, mode)


def combine_waves(w, w_prime, s, s_prime, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Re and Im of Z + Z' (Eqs. 3-5) or Z * Z' (Eqs. 6-7), for Z = w + i s and Z' = w' + i s'."""
    if mode == "interference":
        return w + w_prime, s + s_prime
    return torch.addcmul(w * w_prime, s, s_prime, value=-1), torch.addcmul(w * s_prime, w_prime, s)


def readout_features(real: torch.Tensor, imag: torch.Tensor, readout: str) -> torch.Tensor:
    """What g of Eq. (8) reads from the complex result: Re and Im side by side (B, T, 2D), Re (B, T, D), or |Z|."""
    if readout == "real_imag":
        return torch.cat([real, imag], dim=-1)  # (B, T, 2D)
    if readout == "real":
        return real
    return torch.sqrt(real.square() + imag.square())  # |Z + Z'|; s + s' >= 2 sqrt(eps) > 0


class WaveFusedFunction(torch.autograd.Function):
    """`wave_operation` plus `readout_features` for the bidirectional wave, with a hand-derived backward pass.

    Autograd would keep about ten (B, T, D) temporaries of the closed form; this keeps only the variants v = [w, w']
    (B, T, 2D) and their energies G^2 (B, 1, 2D), and rebuilds s in the backward pass. With
        s_t = sqrt(G^2 - v_t^2 + eps),  G^2 = sum_j v_j^2   (Eqs. 1-2, per dimension)
    the chain rule through G gives  dL/dv_t = direct_t + 2 v_t (sum_j q_j - q_t),  q_t = (dL/ds_t) / (2 s_t),
    where `direct` is the derivative of Eqs. (3)-(7) at fixed s. Results equal the autograd path of
    `wave_operation` (tested in float64, with gradcheck); the causal wave keeps that path.
    """

    @staticmethod
    def forward(ctx, variants: torch.Tensor, mode: str, readout: str, eps: float) -> torch.Tensor:
        squares = variants.square()  # (B, T, 2D)
        energy = squares.sum(dim=1, keepdim=True)  # (B, 1, 2D): G^2 of w and w', Eq. (1)
        s = squares.neg_().add_(energy).clamp_min_(0).add_(eps).sqrt_()  # [s, s'], Eq. (2), in place
        ctx.save_for_backward(variants, energy)
        ctx.mode, ctx.readout, ctx.eps = mode, readout, eps
        w, w_prime = variants.chunk(2, dim=-1)
        s, s_prime = s.chunk(2, dim=-1)
        return readout_features(*combine_waves(w, w_prime, s, s_prime, mode), readout)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_features: torch.Tensor):
        variants, energy = ctx.saved_tensors
        other_energy = energy - variants.square()  # (B, T, 2D): G^2 - v^2
        clamp_passes = other_energy >= 0  # where the clamp of Eq. (2) lets the gradient through
        s = other_energy.clamp_min_(0).add_(ctx.eps).sqrt_()  # [s, s'] again, in place
        w, w_prime = variants.chunk(2, dim=-1)
        s1, s2 = s.chunk(2, dim=-1)
        grad_real, grad_imag = _readout_gradients(grad_features, w, w_prime, s1, s2, ctx.readout)
        if ctx.mode == "interference":  # Re = w + w', Im = s + s'
            grad_direct = torch.cat([grad_real, grad_real], dim=-1)
            if grad_imag is None:  # Re only: no token sees another
                return grad_direct, None, None, None
            grad_s = torch.cat([grad_imag, grad_imag], dim=-1)
        else:  # Re = w w' - s s', Im = w s' + w' s: d/dw, d/dw' at fixed s, and d/ds, d/ds'
            grad_w, grad_w_prime = grad_real * w_prime, grad_real * w
            grad_s1, grad_s2 = (grad_real * s2).neg_(), (grad_real * s1).neg_()
            if grad_imag is not None:
                grad_w.addcmul_(grad_imag, s2)
                grad_w_prime.addcmul_(grad_imag, s1)
                grad_s1.addcmul_(grad_imag, w_prime)
                grad_s2.addcmul_(grad_imag, w)
            grad_direct = torch.cat([grad_w, grad_w_prime], dim=-1)
            grad_s = torch.cat([grad_s1, grad_s2], dim=-1)
        q = grad_s.div_(s).mul_(clamp_passes)  # 2 q_t, zero where the clamp was active
        q_total = q.sum(dim=1, keepdim=True)  # (B, 1, 2D)
        return grad_direct.addcmul_(variants, q.neg_().add_(q_total)), None, None, None


def _readout_gradients(grad_features, w, w_prime, s, s_prime, readout):
    """dL/dRe and dL/dIm from dL/d(features) of `readout_features` (None for Im when only Re is read)."""
    if readout == "real_imag":
        return grad_features.chunk(2, dim=-1)
    if readout == "real":
        return grad_features, None
    real, imag = w + w_prime, s + s_prime  # the magnitude readout is refused with modulation
    magnitude = torch.hypot(real, imag)
    return real.mul_(grad_features).div_(magnitude), imag.mul_(grad_features).div_(magnitude)


class WaveOperation(nn.Module):
    """f and g of Eq. (8): two variants of every token, their wave interference or modulation, and the readout
    g that turns the complex result back into a real token vector ("restore to word embedding", Fig. 6b)."""

    def __init__(self, config: WaveConfig, layer_idx: int = 0):
        super().__init__()
        self.mode = config.wave_mode
        self.readout_type = config.wave_readout
        self.eps = config.wave_eps
        self.implementation = config.wave_implementation  # "fused": `WaveFusedFunction`
        self.causal = config.is_decoder  # G over tokens 1..t instead of the whole text
        self.layer_idx = layer_idx  # where this layer's running sums live in a `WaveCache`
        # The two variants w and w' of Section 4, computed by one fused Linear(d, 2d).
        self.projection = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        readout_width = 2 * config.hidden_size if config.wave_readout == "real_imag" else config.hidden_size
        self.readout = nn.Linear(readout_width, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, token_mask=None, cache=None) -> torch.Tensor:
        variants = _upcast_half(self.projection(hidden_states))  # (B, T, 2D), at least float32
        if token_mask is not None:
            variants = variants * token_mask  # the projection's bias would turn pads back into tokens
        energy = None  # bidirectional: G^2 over the whole text, Eq. (1), inside `wave_operation`
        if self.causal:
            past_energy = None if cache is None else cache.energy[self.layer_idx]
            energy = global_energy(variants, causal=True, past_energy=past_energy)  # (B, T, 2D): G_t^2 of w and w'
            if cache is not None:
                cache.energy[self.layer_idx] = energy[:, -1]  # (B, 2D): the sums over every token so far
        if energy is None and self.implementation == "fused":
            features = WaveFusedFunction.apply(variants, self.mode, self.readout_type, self.eps)
        else:
            w, w_prime = variants.chunk(2, dim=-1)  # (B, T, D) each
            real, imag = wave_operation(w, w_prime, self.mode, self.eps, energy)
            features = readout_features(real, imag, self.readout_type)  # (B, T, 2D) or (B, T, D)
        # Back to the dtype the layer runs in, read from its input and not from `self.readout.weight`: a quantized or
        # adapter-wrapped Linear (torch.ao dynamic int8, PEFT) has no weight tensor to read it from.
        features = _clamp_for_half(features, hidden_states.dtype)
        output = self.readout(features.to(hidden_states.dtype))  # (B, T, D)
        return output if token_mask is None else output * token_mask.to(output.dtype)  # keep a half model in half


class WaveFeedForward(nn.Module):
    """The position-wise feed-forward block of Fig. 6a."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.dense_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACT2FN[config.hidden_act]
        self.dense_out = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_out(self.activation(self.dense_in(hidden_states)))


class WaveLayer(GradientCheckpointingLayer):
    """One Wave block, Eq. (8): W_{n+1} = W_n + D(g(f_{n+1}(W_n))), post-norm as BERT and FNet:
    wave -> g -> dropout -> residual -> LayerNorm [-> feed-forward -> dropout -> residual -> LayerNorm]."""

    def __init__(self, config: WaveConfig, layer_idx: int = 0):
        super().__init__()
        self.wave = WaveOperation(config, layer_idx)
        self.wave_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = WaveFeedForward(config) if config.intermediate_size > 0 else None
        if self.feed_forward is not None:
            self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, token_mask=None, cache=None) -> torch.Tensor:
        wave_output = self.wave(hidden_states, token_mask, cache)
        hidden_states = self.wave_layer_norm(hidden_states + self.dropout(wave_output))
        if self.feed_forward is None:
            return hidden_states
        return self.output_layer_norm(hidden_states + self.dropout(self.feed_forward(hidden_states)))


class WaveEncoder(nn.Module):
    """A stack of `num_hidden_layers` Wave blocks (Eq. 8)."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.layer = nn.ModuleList([WaveLayer(config, layer_idx) for layer_idx in range(config.num_hidden_layers)])

    def forward(self, hidden_states, token_mask=None, output_hidden_states=False, cache=None):
        """`token_mask` (B, T) bool marks the real tokens (None: all of them)."""
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        if token_mask is not None:  # (B, T, 1) zeros and ones, in the dtype the wave's statistics are computed in
            token_mask = token_mask.unsqueeze(-1).to(_upcast_half(hidden_states).dtype)
        for layer in self.layer:
            hidden_states = layer(hidden_states, token_mask, cache=cache)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states


def pool_text(hidden_states: torch.Tensor, token_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """One vector per text from real tokens only (`token_mask` (B, T) bool; None: all): their mean, or the first real
    token ("cls"). (B, T, D) -> (B, D)."""
    if pooling == "cls":
        if token_mask is None:
            return hidden_states[:, 0]
        first_real = token_mask.int().argmax(dim=1)  # (B,): skips left padding
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), first_real]
    if token_mask is None:
        return hidden_states.mean(dim=1)
    mask = token_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
    # An all-padding row has no tokens: clamp the count so it pools to zeros instead of NaN.
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


class WaveWideClassifier(nn.Embedding):
    """The wide part of a Wide & Deep classifier (`config.wide_ngram_sizes`, not in the paper): a linear model on
    the hashed n-grams present in a text, fastText's and NBSVM's features, whose logits are added to the wave's.

        logits_c = sum over the distinct n-grams g of the text of  W[hash(g), c] / sqrt(number of distinct n-grams)

    Presence (not counts) and the square-root scaling are the binary, L2-normalised bag of n-grams that linear
    text classifiers use; W starts at zero, so an untrained wide part leaves the wave's logits unchanged.

    W is an embedding table (buckets, num_labels), so that `sparse_embeddings_enable()` and DDP treat it as the other
    tables: DDP expects sparse gradients from `nn.Embedding` modules only.
    """

    def __init__(self, config: WaveConfig):
        # `_weight` skips nn.Embedding's random initialisation: W starts at zero (`_init_weights`), drawing nothing.
        shape = (config.wide_buckets, config.num_labels)
        super().__init__(*shape, _weight=torch.zeros(shape))
        self.ngram_sizes = list(config.wide_ngram_sizes)
        self.buckets = config.wide_buckets
        self.ngram_hash = config.ngram_hash

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        real_tokens = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask != 0
        hashed = [hash_ngrams(input_ids, real_tokens, n, self.buckets, self.ngram_hash) for n in self.ngram_sizes]
        buckets = torch.cat([b for b, _ in hashed], dim=1)  # (B, N): every order's n-gram at every token
        exists = torch.cat([e for _, e in hashed], dim=1)
        buckets = torch.where(exists, buckets, -1).sort(dim=1).values  # missing n-grams first, as -1
        distinct = (buckets != shift_right(buckets, 1, -1)) & (buckets >= 0)  # the first of every run of equal ids
        scale = distinct.sum(dim=1, keepdim=True).clamp_min(1).to(self.weight.dtype).rsqrt()  # (B, 1)
        weights = distinct.to(self.weight.dtype) * scale  # (B, N)
        class_weights = super().forward(buckets.clamp_min(0))  # (B, N, num_labels)
        return torch.einsum("bn,bnc->bc", weights, class_weights)


class WaveLMHead(nn.Module):
    """Scores over the vocabulary for every token, as BERT's language-model head: dense -> activation -> LayerNorm ->
    decoder. The decoder's weight is the input embedding table (`config.tie_word_embeddings`); its bias is its own."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = ACT2FN[config.hidden_act]
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.activation(self.dense(hidden_states))))  # (B, T, V)


class WaveCache:
    """The state a causal Wave Network carries from one decoding step to the next: no keys, no values.

    Per layer, the running sums of squares of the two variants w and w' over every token so far, (B, 2D): the G_t^2
    of Eq. (1) that the next token extends (see `global_energy`). Plus, per text, how many real tokens it has seen,
    for the next position. Its size is num_layers x B x 2D whatever the length, where a Transformer's KV cache grows
    by 2 x num_layers x B x D values with every token. Pads add exactly zero to the sums, so left padding is exact.
    """

    is_compileable = False  # what `generate` asks of a cache before it considers compiling the forward pass

    def __init__(self, config: WaveConfig):
        self.energy: list[torch.Tensor | None] = [None] * config.num_hidden_layers  # (B, 2D) per layer
        self.seen_tokens: torch.Tensor | None = None  # (B,): real tokens per text, i.e. the next position
        self.seq_length = 0  # positions fed so far, pads included (what `generate` calls the cache length)
        # the ids and real-token flags (B, ngram_context) of the last tokens, which `WaveEmbeddings` keeps here for
        # the n-grams of the next ones
        self.past_tokens: tuple[torch.Tensor, torch.Tensor] | None = None

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seq_length

    def update_length(self, token_mask: torch.Tensor | None, batch_size: int, seq_length: int, device):
        """Count the tokens of a forward call (`token_mask` (B, T) marks the real ones; None: all)."""
        new_tokens = torch.full((batch_size,), seq_length, device=device)
        if token_mask is not None:
            new_tokens = token_mask.sum(dim=1).long()  # (B,)
        self.seen_tokens = new_tokens if self.seen_tokens is None else self.seen_tokens + new_tokens
        self.seq_length += seq_length

    def reorder_cache(self, beam_idx: torch.LongTensor):
        """Follow the beams that beam search keeps."""
        self.energy = [None if e is None else e.index_select(0, beam_idx.to(e.device)) for e in self.energy]
        if self.seen_tokens is not None:
            self.seen_tokens = self.seen_tokens.index_select(0, beam_idx.to(self.seen_tokens.device))
        if self.past_tokens is not None:
            self.past_tokens = tuple(t.index_select(0, beam_idx.to(t.device)) for t in self.past_tokens)

    def nbytes(self) -> int:
        """Memory held by the cache, in bytes."""
        tensors = [e for e in self.energy if e is not None] + [t for t in (self.seen_tokens,) if t is not None]
        tensors += list(self.past_tokens or ())
        return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class WaveModelOutput(BaseModelOutputWithPooling):
    """`BaseModelOutputWithPooling` plus the `WaveCache` of a causal model."""

    cache: WaveCache | None = None


def _upcast_half(x: torch.Tensor) -> torch.Tensor:
    """Squares of the wave statistics overflow float16 and lose bits in bfloat16; compute them in float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def values_are_free_to_read(tensor: torch.Tensor) -> bool:
    """Whether a check may read `tensor`'s values (ids in the vocabulary, positions in the table, labels in range).

    On the CPU that costs nothing. On an accelerator `.item()` / `int()` / indexing by value wait for the device to
    finish every queued kernel, once per check and step, so the checks are skipped there (an out-of-range id then
    fails inside the embedding lookup instead); meta tensors have no values, and `torch.compile` cannot trace a read.
    """
    return tensor.device.type == "cpu" and not torch.compiler.is_compiling()


def _clamp_for_half(x: torch.Tensor, compute_dtype: torch.dtype) -> torch.Tensor:
    """Keep values finite when the next matmul runs in float16 (the T5 recipe): Re and Im grow with text energy.
    `compute_dtype` is the dtype the layer runs in; autocast may still run the matmul in float16."""
    device_type = x.device.type
    # Devices without autocast (meta, for one) refuse `is_autocast_enabled`: ask only where it exists.
    autocast_in_half = (
        torch.amp.is_autocast_available(device_type)
        and torch.is_autocast_enabled(device_type)
        and torch.get_autocast_dtype(device_type) == torch.float16
    )
    runs_in_half = compute_dtype == torch.float16 or autocast_in_half
    if not runs_in_half:
        return x
    limit = torch.finfo(torch.float16).max - 1000
    return x.clamp(-limit, limit)


class WavePreTrainedModel(PreTrainedModel):
    config_class = WaveConfig
    base_model_prefix = "wave"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["WaveLayer"]
    _input_embed_layer = "word_embeddings"  # `embeddings.word_embeddings`: Transformers' own getter and setter find it

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, WaveWideClassifier):  # an nn.Embedding, but one that starts at zero
            init.zeros_(module.weight)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    # Sparse tables are a training-time switch, as gradient checkpointing is: not part of the config, so that a saved
    # model never carries into a later user's training loop something its optimizer or clipping cannot take.
    _supports_sparse_embeddings = True

    def sparse_embedding_tables(self) -> list[nn.Embedding]:
        """The tables that `sparse_embeddings_enable()` makes sparse: token and n-gram embeddings and the wide part.
        Position embeddings stay dense (every step touches most of their rows)."""
        embeddings = self.base_model.embeddings
        tables = (embeddings.word_embeddings, getattr(embeddings, "ngram_embeddings", None))
        return [table for table in (*tables, getattr(self, "wide", None)) if table is not None]

    def sparse_embeddings_enable(self):
        """Give the token, n-gram and wide tables sparse gradients: a step touches only the rows of the batch's tokens
        and n-grams, not the tables' millions of weights (the recipe's speed, `configuration/train/wave-recipe.json`).

        Not saved with the model. torch's AdamW and `clip_grad_norm_` refuse sparse gradients: train with
        [`WaveTrainer`] and `WaveTrainingArguments(sparse_embeddings=True)`, which call this and step the tables
        with [`LazyAdamW`] and clip them with [`clip_grad_norm_sparse_aware_`]; in a loop of your own, use those
        two. See docs/training.md#dense-and-sparse-tables.
        """
        if not self._supports_sparse_embeddings:
            raise ValueError(
                f"{type(self).__name__} scores every token of the vocabulary with the token table it shares, which "
                "therefore gets a dense gradient at every step: sparse tables are for classification heads. Train "
                "it without sparse_embeddings."
            )
        for table in self.sparse_embedding_tables():
            table.sparse = True

    def sparse_embeddings_disable(self):
        """Dense gradients for every table again (the default): what the plain `Trainer` and torch's AdamW take."""
        for table in self.sparse_embedding_tables():
            table.sparse = False

    @property
    def is_sparse_embeddings(self) -> bool:
        """Whether `sparse_embeddings_enable()` is in effect."""
        return any(table.sparse for table in self.sparse_embedding_tables())


class WaveModel(WavePreTrainedModel):
    """The bare Wave Network: embeddings, `num_hidden_layers` Wave blocks and mask-aware pooling.

    Without an `attention_mask`, every position is a real token, padding included (as in BERT): pass the mask
    that the tokenizer returns whenever a batch is padded. With `config.is_decoder` the wave is causal (token t sees
    tokens 1..t, see `global_energy`) and a `WaveCache` carries the running sums from one call to the next.
    """

    def __init__(self, config: WaveConfig):
        super().__init__(config)
        config.check_wave_fields()
        self.embeddings = WaveEmbeddings(config)
        self.encoder = WaveEncoder(config)
        self.post_init()

    @can_return_tuple
    @accepts_past_key_values
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: WaveCache | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> WaveModelOutput | tuple:
        r"""
        token_type_ids (`torch.LongTensor`, *optional*):
            Accepted so that `model(**tokenizer(texts))` works with BERT tokenizers, and ignored: the Wave Network
            has no segment embeddings.
        cache (`WaveCache`, *optional*):
            Causal models (`config.is_decoder`) only: the running sums of earlier calls, updated in place, so that
            the input holds only the new tokens. `attention_mask` may cover the earlier tokens too (as `generate`
            passes it). Also taken as `past_key_values`, its name before transformers 5.24 (deprecated).
        use_cache (`bool`, *optional*):
            Causal models only: return the `WaveCache` (a new one if none is passed). Defaults to `config.use_cache`.
        kwargs (`TransformersKwargs`, *optional*):
            What Transformers passes to every model (PEFT's task wrappers, Trainer's `num_items_in_batch`), accepted
            and unused here; `output_attentions=True` is refused, as the Wave Network has no attention.
        """
        if kwargs.get("output_attentions"):
            raise ValueError(
                "The Wave Network has no attention weights to return (`output_attentions=True`): tokens meet through "
                "the global semantics G of Eq. (1). Use `output_hidden_states=True` for what each layer computes."
            )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        cache = self._prepare_cache(cache, use_cache)
        batch_size, seq_length = self._check_inputs(input_ids, attention_mask, inputs_embeds, cache)
        device = input_ids.device if input_ids is not None else inputs_embeds.device

        token_mask = self._token_mask(attention_mask, seq_length)  # (B, T) bool, or None: every token is real
        if position_ids is None:
            position_ids = self._position_ids(token_mask, batch_size, seq_length, device, cache)
        self._check_positions(position_ids)
        if cache is not None:
            cache.update_length(token_mask, batch_size, seq_length, device)
        token_mask = self._drop_tokens(token_mask, batch_size, seq_length, device)

        hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds, token_mask, cache)  # (B, T, D)
        sequence_output, all_hidden_states = self.encoder(hidden_states, token_mask, output_hidden_states, cache)
        pooled_output = pool_text(sequence_output, token_mask, self.config.pooling)  # (B, D)
        return WaveModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            cache=cache,
        )

    def _prepare_cache(self, cache, use_cache):
        """The `WaveCache` to fill: the one passed, a new one if `use_cache`, or None. Causal models only."""
        if not self.config.is_decoder:
            if cache is not None:
                raise ValueError(
                    "A cache needs a causal Wave Network (`is_decoder=True`, e.g. WaveForCausalLM): with "
                    "the bidirectional G of Eq. (1), every token depends on the tokens after it."
                )
            return None
        if cache is not None and not isinstance(cache, WaveCache):
            raise ValueError(f"The cache must be a WaveCache (running sums of squares), got {type(cache).__name__}.")
        if self.training and self.is_activation_checkpointing:
            if cache is not None or use_cache:
                # checkpointed layers run twice (again in the backward pass): they would add their sums twice
                logger.warning_once("A WaveCache is not filled while training with activation checkpointing.")
            return None
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        return WaveCache(self.config) if cache is None and use_cache else cache

    @staticmethod
    def _token_mask(attention_mask, seq_length):
        """Which positions are real tokens, (B, T) bool, from an `attention_mask` that may also cover cached tokens."""
        if attention_mask is None:
            return None
        return attention_mask[:, -seq_length:] != 0  # the new tokens' part of a mask that covers the past

    def _drop_tokens(self, token_mask, batch_size, seq_length, device):
        """Token dropout (`config.token_dropout_prob`): while training, a random share of the real tokens becomes
        padding for the whole of `WaveModel` (the wave, the pooling, and every n-gram that contains one of them),
        (B, T) -> (B, T). Positions still count them, as they count the tokens a tokenizer truncates in between."""
        if not self.training or self.config.token_dropout_prob == 0:
            return token_mask
        kept = torch.rand(batch_size, seq_length, device=device) >= self.config.token_dropout_prob
        return kept if token_mask is None else token_mask & kept

    @staticmethod
    def _position_ids(token_mask, batch_size, seq_length, device, cache=None):
        """Count positions over real tokens only, so left padding does not shift them; continue after the real
        tokens that a cache has already seen."""
        if token_mask is None:
            positions = torch.arange(seq_length, device=device).expand(batch_size, seq_length)
        else:
            positions = (token_mask.long().cumsum(dim=-1) - 1).clamp_min(0)
        seen = None if cache is None else cache.seen_tokens
        return positions if seen is None else positions + seen.unsqueeze(-1)

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds, cache=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if input_ids is None and self.config.ngram_sizes:
            raise ValueError(
                f"The n-gram embeddings (`ngram_sizes={list(self.config.ngram_sizes)}`) are hashed from token ids: "
                "pass `input_ids`, not `inputs_embeds`."
            )
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(
                    f"`input_ids` must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}."
                    " Add a batch dimension with `input_ids.unsqueeze(0)` for a single text."
                )
            if input_ids.dtype.is_floating_point:
                raise ValueError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}.")
            shape = tuple(input_ids.shape)
            if values_are_free_to_read(input_ids) and input_ids.numel() > 0:
                low, high = input_ids.min().item(), input_ids.max().item()
                if low < 0 or high >= self.config.vocab_size:
                    raise ValueError(
                        f"`input_ids` must be in [0, vocab_size={self.config.vocab_size}), got values in "
                        f"[{low}, {high}]. Does the tokenizer match the model's vocabulary?"
                    )
        else:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    "`inputs_embeds` must have shape (batch_size, sequence_length, "
                    f"hidden_size={self.config.hidden_size}), got {tuple(inputs_embeds.shape)}."
                )
            shape = tuple(inputs_embeds.shape[:2])
        if shape[1] == 0:
            raise ValueError("The input has sequence length 0: a text needs at least one token.")
        past_length = 0 if cache is None else cache.get_seq_length()
        with_past = (shape[0], past_length + shape[1])  # a mask that also covers the cached tokens
        if attention_mask is not None and tuple(attention_mask.shape) not in (shape, with_past):
            also = f" (or cover the {past_length} cached tokens too)" if past_length else ""
            raise ValueError(
                f"`attention_mask` must have the same shape as the input ids {shape}{also}, got "
                f"{tuple(attention_mask.shape)}."
            )
        return shape

    def _check_positions(self, position_ids):
        if self.config.position_embedding_type != "learned" or not values_are_free_to_read(position_ids):
            return
        longest = int(position_ids.max()) + 1
        if longest > self.config.max_position_embeddings:
            raise ValueError(
                f"The input has {longest} positions but `max_position_embeddings` is "
                f"{self.config.max_position_embeddings}: truncate the text (tokenizer `truncation=True, max_length=...`)"
                ' or use position_embedding_type="sinusoidal" or "none", which have no length limit.'
            )


def classifier_dropout(config: WaveConfig) -> float:
    """Dropout before a classifier: `classifier_dropout`, else `hidden_dropout_prob` (as BERT's heads)."""
    return config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob


class WaveForSequenceClassification(WavePreTrainedModel):
    """Wave Network with a linear classifier (or regressor) on the pooled text vector."""

    # Its losses are means over the texts of a batch (cross-entropy, MSE, BCE), not sums over `num_items_in_batch`:
    # Trainer must divide them by the gradient accumulation steps itself, as it does for a model without loss kwargs.
    accepts_loss_kwargs = False

    def __init__(self, config: WaveConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.wave = WaveModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.wide = WaveWideClassifier(config) if config.wide_ngram_sizes else None
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput | tuple:
        r"""
        The other inputs (`position_ids`, `inputs_embeds`, `output_hidden_states`, ...) go to `WaveModel`.
        labels (`torch.LongTensor` of shape `(batch_size,)` or `(batch_size, num_labels)`, *optional*):
            Class indices in `[0, num_labels)` (cross-entropy), real targets if `num_labels == 1` (mean squared
            error), or multi-hot float targets with `problem_type="multi_label_classification"` (BCE with logits).
        """
        outputs = self.wave(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        if self.wide is not None:
            if input_ids is None:
                raise ValueError("The wide part (`wide_ngram_sizes`) hashes token ids: pass `input_ids`.")
            logits = logits + self.wide(input_ids, attention_mask).to(device=logits.device, dtype=logits.dtype)
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Transformers' `ForSequenceClassificationLoss` (the loss `BertForSequenceClassification` picks for
        `problem_type`, inferred from the labels if unset), after checks that name what is wrong with the labels."""
        labels = labels.to(logits.device)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"Got {labels.shape[0]} labels for a batch of {logits.shape[0]} texts.")
        if self.config.problem_type is None:  # the library's rule, decided here so that the checks know it
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"
        if self.config.problem_type == "single_label_classification":
            _check_class_labels(labels, self.num_labels)
        else:  # regression and multi-label targets are real numbers
            if self.config.problem_type == "multi_label_classification" and labels.shape != logits.shape:
                raise ValueError(
                    f"Multi-label targets must have shape (batch_size, num_labels={self.num_labels}), "
                    f"got {tuple(labels.shape)}."
                )
            labels = labels.to(logits.dtype)
        return self.loss_function(labels=labels, pooled_logits=logits, config=self.config)


def _check_class_labels(labels: torch.Tensor, num_labels: int):
    if labels.dtype.is_floating_point:
        raise ValueError(f"Single-label classification needs integer class labels, got dtype {labels.dtype}.")
    if not values_are_free_to_read(labels):  # indexing by value would synchronise an accelerator
        return
    wrong = labels[(labels != -100) & ((labels < 0) | (labels >= num_labels))]
    if wrong.numel() > 0:
        raise ValueError(
            f"Labels must be class indices in [0, num_labels={num_labels}), got {wrong.unique().tolist()}. "
            "Set `num_labels` (and `id2label`) to match the dataset."
        )


class WaveForTokenClassification(WavePreTrainedModel):
    """Wave Network with a linear classifier on every token (tagging: named entities, parts of speech, ...)."""

    def __init__(self, config: WaveConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.wave = WaveModel(config)
        self.dropout = nn.Dropout(classifier_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput | tuple:
        r"""
        The other inputs (`position_ids`, `inputs_embeds`, `output_hidden_states`, ...) go to `WaveModel`.
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            A class index in `[0, num_labels)` per token; -100 (pads, special tokens, sub-words) is ignored.
        """
        outputs = self.wave(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (B, T, num_labels)
        loss = None if labels is None else self._loss(logits, labels, **kwargs)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """Cross-entropy over the labelled tokens (-100 ignored): their mean, or their sum over
        `num_items_in_batch` when Trainer accumulates gradients (`ForTokenClassification`)."""
        labels = labels.to(logits.device)
        if labels.shape != logits.shape[:2]:
            raise ValueError(
                f"Token labels must have the shape of the input ids {tuple(logits.shape[:2])}, got "
                f"{tuple(labels.shape)}."
            )
        _check_class_labels(labels, self.num_labels)
        return self.loss_function(logits, labels, self.config, **kwargs)


class WaveForMaskedLM(WavePreTrainedModel):
    """Wave Network with a language-model head that predicts masked tokens from both sides (BERT's pre-training
    objective). Its output projection is the input embedding table."""

    _tied_weights_keys = {"lm_head.decoder.weight": "wave.embeddings.word_embeddings.weight"}
    _supports_sparse_embeddings = False  # the output layer shares the token table: its gradient is dense

    def __init__(self, config: WaveConfig):
        super().__init__(config)
        if config.is_decoder:
            logger.warning(
                "WaveForMaskedLM with `is_decoder=True` sees only the tokens before each position; set "
                "`is_decoder=False` for the bidirectional G of Eq. (1)."
            )
        self.wave = WaveModel(config)
        self.lm_head = WaveLMHead(config)
        self.post_init()

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput | tuple:
        r"""
        The other inputs (`position_ids`, `inputs_embeds`, `output_hidden_states`, ...) go to `WaveModel`.
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            The original token id at every masked position and -100 everywhere else (ignored), as
            `DataCollatorForLanguageModeling` makes them. The loss is the mean cross-entropy over the masked tokens,
            or their sum over `num_items_in_batch` (the masked tokens of all accumulated batches, from Trainer).
        """
        outputs = self.wave(input_ids, attention_mask=attention_mask, return_dict=True, **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)  # (B, T, V)
        loss = None
        if labels is not None:  # `ForMaskedLMLoss`, in float32
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)


class WaveForCausalLM(WavePreTrainedModel, GenerationMixin):
    """Left-to-right Wave language model: the causal wave, in which token t sees the global semantics of tokens
    1..t only (G_t^2 a running sum of squares, see `global_energy`), and a language-model head tied to the input
    embeddings. `generate()` carries a `WaveCache` from step to step: per layer two running sums, (B, 2D), whatever
    the length, instead of a key/value cache that grows with every token."""

    _tied_weights_keys = {"lm_head.decoder.weight": "wave.embeddings.word_embeddings.weight"}
    _is_stateful = True  # running sums cannot be rolled back to an earlier token: no assisted generation
    _supports_sparse_embeddings = False  # the output layer shares the token table: its gradient is dense

    def __init__(self, config: WaveConfig):
        if not config.is_decoder:
            logger.info("WaveForCausalLM sets `is_decoder=True`: a causal model must not see later tokens.")
            config = copy.deepcopy(config)  # the caller's config (maybe shared with an encoder) stays as it was
            config.is_decoder = True
        super().__init__(config)
        self.wave = WaveModel(config)
        self.lm_head = WaveLMHead(config)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # `generate` must not impose a key/value cache: the model makes its own `WaveCache`

    def get_output_embeddings(self):
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    @accepts_past_key_values
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        cache: WaveCache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast | tuple:
        r"""
        cache (`WaveCache`, *optional*):
            The running sums of the tokens before `input_ids` (from an earlier call with `use_cache=True`), updated in
            place. `attention_mask` may cover those earlier tokens too. Also taken as `past_key_values`, its name
            before transformers 5.24.
        use_cache (`bool`, *optional*):
            Return the `WaveCache` (defaults to `config.use_cache`; off when `labels` are given).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Usually the input ids: the scores at position t are trained to predict token t + 1. -100 is ignored.
            The loss is the mean over the predicted tokens, or their sum over `num_items_in_batch` (the predicted
            tokens of all accumulated batches, from Trainer).
        logits_to_keep (`int` or `torch.Tensor`, *optional*):
            Score only the last `logits_to_keep` positions (0: all), or the positions in a 1-D tensor; `generate`
            asks for the last one, which spares a (B, T, vocab_size) tensor on long prompts.
        """
        if labels is not None:
            use_cache = False
        outputs = self.wave(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        kept = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(outputs.last_hidden_state[:, kept])  # (B, T or kept, V)
        loss = None if labels is None else self._loss(logits, labels, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, cache=outputs.cache
        )

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor, **kwargs) -> torch.Tensor:
        """Next-token cross-entropy (`ForCausalLMLoss`, in float32): the scores at t predict label t + 1; -100 (pads)
        is ignored."""
        if labels.shape != logits.shape[:2]:
            raise ValueError(
                f"Labels must have the shape of the scored positions {tuple(logits.shape[:2])}, got "
                f"{tuple(labels.shape)} (pass logits_to_keep=0 with labels)."
            )
        return self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)


WaveConfig.register_for_auto_class()
WaveModel.register_for_auto_class("AutoModel")
WaveForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
WaveForTokenClassification.register_for_auto_class("AutoModelForTokenClassification")
WaveForMaskedLM.register_for_auto_class("AutoModelForMaskedLM")
WaveForCausalLM.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "WaveCache",
    "WaveForCausalLM",
    "WaveForMaskedLM",
    "WaveForSequenceClassification",
    "WaveForTokenClassification",
    "WaveModel",
    "WavePreTrainedModel",
]
