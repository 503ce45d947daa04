"""PyTorch Wave Network.

X. Zhang and V. S. Sheng, "Wave Network: An Ultra-Small Language Model", arXiv 2411.02674 (v4), Sections 3-4.
Every token is a complex vector Z = G exp(i alpha): its magnitude G is the global semantics of the whole text,
its phase alpha how the token relates to it. Two such representations are combined element-wise by
interference (Z + Z') or modulation (Z * Z'), at a cost linear in the sequence length.
"""

import math

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss

from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.utils import logging

from .configuration_wave import WaveConfig

logger = logging.get_logger(__name__)


def sinusoidal_position_embeddings(position_ids: torch.Tensor, dim: int) -> torch.Tensor:
    """Fixed sin/cos position codes (Vaswani et al., 2017) for any position: (B, T) -> (B, T, dim)."""
    frequencies = torch.exp(
        torch.arange(0, dim, 2, device=position_ids.device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    angles = position_ids.unsqueeze(-1).float() * frequencies  # (B, T, ceil(dim / 2))
    return torch.cat([angles.sin(), angles.cos()], dim=-1)[..., :dim]


class WaveEmbeddings(nn.Module):
    """Token embeddings plus a position encoding (paper Fig. 6a)."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embedding_type = config.position_embedding_type
        if config.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        # Unit-amplitude sinusoids would swamp token embeddings initialised at std `initializer_range`.
        self.sinusoidal_scale = config.initializer_range
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:
        embeddings = self.word_embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        if self.position_embedding_type == "learned":
            embeddings = embeddings + self.position_embeddings(position_ids)
        elif self.position_embedding_type == "sinusoidal":
            positions = sinusoidal_position_embeddings(position_ids, embeddings.shape[-1])
            embeddings = embeddings + self.sinusoidal_scale * positions.to(embeddings.dtype)
        return self.dropout(embeddings)


def wave_context(w: torch.Tensor, eps: float) -> torch.Tensor:
    """Imaginary part s = G sin(alpha) of a token wave, from its real part w (paper Eqs. 1-2).

    Eq. (1): G_k = sqrt(sum_j w_{j,k}^2), the L2 norm over the *tokens* of the text, one value per dimension.
    Eq. (2): alpha = arctan2(sqrt(1 - (w/G)^2), w/G), so G cos(alpha) = w and
             G sin(alpha) = sqrt(G^2 - w^2) = sqrt(energy of all the other tokens in that dimension).

    Pads must already be zero in `w` so that G counts real tokens only; `eps` keeps the gradient of the square
    root finite where one token holds all of a dimension's energy (G^2 - w^2 = 0, e.g. any one-token text).
    """
    energy = w.square()  # (B, T, D)
    total_energy = energy.sum(dim=1, keepdim=True)  # (B, 1, D): G^2, Eq. (1)
    return torch.sqrt((total_energy - energy).clamp_min(0) + eps)


def wave_operation(w: torch.Tensor, w_prime: torch.Tensor, mode: str, eps: float = 1e-6):
    """Combine the waves Z = w + i s and Z' = w' + i s' of two token variants, without trigonometry.

    Z_j = G exp(i alpha_j) (Eqs. 1-2) equals w_j + i s_j with s from `wave_context`, so
        interference, Eqs. (3)-(5):  Z + Z' = (w + w')        + i (s + s')
        modulation,   Eqs. (6)-(7):  Z * Z' = (w w' - s s')   + i (w s' + w' s)
    (magnitudes multiply, G G', and phases add, alpha + alpha'). Inputs are (B, T, D) with pads zeroed;
    returns the real and imaginary parts, each (B, T, D).
    """
    s, s_prime = wave_context(w, eps), wave_context(w_prime, eps)
    if mode == "interference":
        return w + w_prime, s + s_prime
    return w * w_prime - s * s_prime, w * s_prime + w_prime * s


class WaveOperation(nn.Module):
    """f and g of Eq. (8): two variants of every token, their wave interference or modulation, and the readout
    g that turns the complex result back into a real token vector ("restore to word embedding", Fig. 6b)."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.mode = config.wave_mode
        self.readout_type = config.wave_readout
        self.eps = config.wave_eps
        # The two variants w and w' of Section 4, computed by one fused Linear(d, 2d).
        self.projection = nn.Linear(config.hidden_size, 2 * config.hidden_size)
        readout_width = 2 * config.hidden_size if config.wave_readout == "real_imag" else config.hidden_size
        self.readout = nn.Linear(readout_width, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        variants = _upcast_half(self.projection(hidden_states))  # (B, T, 2D), at least float32
        if token_mask is not None:
            variants = variants * token_mask  # the projection's bias would turn pads back into tokens
        w, w_prime = variants.chunk(2, dim=-1)  # (B, T, D) each
        real, imag = wave_operation(w, w_prime, self.mode, self.eps)
        if self.readout_type == "real_imag":
            features = torch.cat([real, imag], dim=-1)  # (B, T, 2D)
        elif self.readout_type == "real":
            features = real
        else:
            features = torch.sqrt(real.square() + imag.square())  # |Z + Z'|; s + s' >= 2 sqrt(eps) > 0
        features = _clamp_for_half(features, self.readout.weight)
        output = self.readout(features.to(self.readout.weight.dtype))  # (B, T, D)
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

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.wave = WaveOperation(config)
        self.wave_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = WaveFeedForward(config) if config.intermediate_size > 0 else None
        if self.feed_forward is not None:
            self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, token_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.wave_layer_norm(hidden_states + self.dropout(self.wave(hidden_states, token_mask)))
        if self.feed_forward is None:
            return hidden_states
        return self.output_layer_norm(hidden_states + self.dropout(self.feed_forward(hidden_states)))


class WaveEncoder(nn.Module):
    """A stack of `num_hidden_layers` Wave blocks (Eq. 8)."""

    def __init__(self, config: WaveConfig):
        super().__init__()
        self.layer = nn.ModuleList([WaveLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states, token_mask=None, output_hidden_states=False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layer:
            hidden_states = layer(hidden_states, token_mask)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states


def pool_text(hidden_states: torch.Tensor, token_mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """One vector per text from real tokens only: their mean, or the first real token ("cls"). (B, T, D) -> (B, D)."""
    if pooling == "cls":
        if token_mask is None:
            return hidden_states[:, 0]
        first_real = token_mask.squeeze(-1).argmax(dim=1)  # (B,): skips left padding
        return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), first_real]
    if token_mask is None:
        return hidden_states.mean(dim=1)
    mask = token_mask.to(hidden_states.dtype)
    # An all-padding row has no tokens: clamp the count so it pools to zeros instead of NaN.
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def _upcast_half(x: torch.Tensor) -> torch.Tensor:
    """Squares of the wave statistics overflow float16 and lose bits in bfloat16; compute them in float32."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _clamp_for_half(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Keep values finite when the next matmul runs in float16 (the T5 recipe): Re and Im grow with text energy."""
    device_type = x.device.type
    runs_in_half = weight.dtype == torch.float16 or (
        torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.float16
    )
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

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
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


class WaveModel(WavePreTrainedModel):
    """The bare Wave Network: embeddings, `num_hidden_layers` Wave blocks and mask-aware pooling.

    Without an `attention_mask`, every position is a real token, padding included (as in BERT): pass the mask
    that the tokenizer returns whenever a batch is padded.
    """

    def __init__(self, config: WaveConfig):
        super().__init__(config)
        config.check_wave_fields()
        self.config = config
        self.embeddings = WaveEmbeddings(config)
        self.encoder = WaveEncoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        token_type_ids (`torch.LongTensor`, *optional*):
            Accepted so that `model(**tokenizer(texts))` works with BERT tokenizers, and ignored: the Wave Network
            has no segment embeddings.
        """
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        batch_size, seq_length = self._check_inputs(input_ids, attention_mask, inputs_embeds)
        device = input_ids.device if input_ids is not None else inputs_embeds.device

        token_mask = None if attention_mask is None else (attention_mask != 0).unsqueeze(-1)  # (B, T, 1)
        if position_ids is None:
            position_ids = self._position_ids(attention_mask, batch_size, seq_length, device)
        self._check_positions(position_ids)

        hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds)  # (B, T, D)
        if token_mask is not None:
            token_mask = token_mask.to(_upcast_half(hidden_states).dtype)
        sequence_output, all_hidden_states = self.encoder(hidden_states, token_mask, output_hidden_states)
        pooled_output = pool_text(sequence_output, token_mask, self.config.pooling)  # (B, D)

        if not return_dict:
            return tuple(v for v in (sequence_output, pooled_output, all_hidden_states) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output, pooler_output=pooled_output, hidden_states=all_hidden_states
        )

    @staticmethod
    def _position_ids(attention_mask, batch_size, seq_length, device):
        """Count positions over real tokens only, so left padding does not shift them."""
        if attention_mask is None:
            return torch.arange(seq_length, device=device).expand(batch_size, seq_length)
        return ((attention_mask != 0).long().cumsum(dim=-1) - 1).clamp_min(0)

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` or `inputs_embeds`.")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(
                    f"`input_ids` must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}."
                    " Add a batch dimension with `input_ids.unsqueeze(0)` for a single text."
                )
            if input_ids.dtype.is_floating_point:
                raise ValueError(f"`input_ids` must hold integer token ids, got dtype {input_ids.dtype}.")
            shape = tuple(input_ids.shape)
            if not torch.compiler.is_compiling() and input_ids.numel() > 0:
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
        if attention_mask is not None and tuple(attention_mask.shape) != shape:
            raise ValueError(
                f"`attention_mask` must have the same shape as the input ids {shape}, got {tuple(attention_mask.shape)}."
            )
        return shape

    def _check_positions(self, position_ids):
        if self.config.position_embedding_type != "learned" or torch.compiler.is_compiling():
            return
        longest = int(position_ids.max()) + 1
        if longest > self.config.max_position_embeddings:
            raise ValueError(
                f"The input has {longest} positions but `max_position_embeddings` is "
                f"{self.config.max_position_embeddings}: truncate the text (tokenizer `truncation=True, max_length=...`)"
                ' or use position_embedding_type="sinusoidal" or "none", which have no length limit.'
            )


class WaveForSequenceClassification(WavePreTrainedModel):
    """Wave Network with a linear classifier (or regressor) on the pooled text vector."""

    def __init__(self, config: WaveConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.config = config
        self.wave = WaveModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        token_type_ids (`torch.LongTensor`, *optional*):
            Accepted from BERT tokenizers and ignored (no segment embeddings).
        labels (`torch.LongTensor` of shape `(batch_size,)` or `(batch_size, num_labels)`, *optional*):
            Class indices in `[0, num_labels)` (cross-entropy), real targets if `num_labels == 1` (mean squared
            error), or multi-hot float targets with `problem_type="multi_label_classification"` (BCE with logits).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        outputs = self.wave(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))  # (B, num_labels)
        loss = None if labels is None else self._loss(logits, labels)

        if not return_dict:
            output = (logits,) + ((outputs.hidden_states,) if outputs.hidden_states is not None else ())
            return ((loss,) + output) if loss is not None else output
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss `BertForSequenceClassification` picks for `problem_type`, inferred from the labels if unset."""
        labels = labels.to(logits.device)
        if labels.shape[0] != logits.shape[0]:
            raise ValueError(f"Got {labels.shape[0]} labels for a batch of {logits.shape[0]} texts.")
        if self.config.problem_type is None:
            if self.num_labels == 1:
                self.config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                self.config.problem_type = "single_label_classification"
            else:
                self.config.problem_type = "multi_label_classification"

        if self.config.problem_type == "regression":
            if self.num_labels == 1:
                return MSELoss()(logits.squeeze(), labels.squeeze().to(logits.dtype))
            return MSELoss()(logits, labels.to(logits.dtype))
        if self.config.problem_type == "single_label_classification":
            if not torch.compiler.is_compiling():
                _check_class_labels(labels, self.num_labels)
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        if labels.shape != logits.shape:
            raise ValueError(
                f"Multi-label targets must have shape (batch_size, num_labels={self.num_labels}), "
                f"got {tuple(labels.shape)}."
            )
        return BCEWithLogitsLoss()(logits, labels.to(logits.dtype))


def _check_class_labels(labels: torch.Tensor, num_labels: int):
    if labels.dtype.is_floating_point:
        raise ValueError(f"Single-label classification needs integer class labels, got dtype {labels.dtype}.")
    wrong = labels[(labels != -100) & ((labels < 0) | (labels >= num_labels))]
    if wrong.numel() > 0:
        raise ValueError(
            f"Labels must be class indices in [0, num_labels={num_labels}), got {wrong.unique().tolist()}. "
            "Set `num_labels` (and `id2label`) to match the dataset."
        )


WaveConfig.register_for_auto_class()
WaveModel.register_for_auto_class("AutoModel")
WaveForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["WaveForSequenceClassification", "WaveModel", "WavePreTrainedModel"]
