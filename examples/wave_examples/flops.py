"""One FLOP and activation model of the Wave layer and the BERT layer, used by `examples/benchmark.py` and by
`examples/analysis/complexity.py` (formulas derived in docs/complexity.md and docs/benchmark.md).

`wave_layer` and `bert_layer` describe one layer's forward pass over B texts of T tokens (n = B T tokens, width d,
feed-forward width f, h heads) with four counts, each a different quantity, not four estimates of one:

- `matmul`: FLOPs of the matrix products by component, a multiply-add = 2 FLOPs. Exact: PyTorch's
  `FlopCounterMode` counts the same, and the backward pass exactly twice as much.
- `elementwise_flops`: the arithmetic of all other operators, 1 FLOP per element and operation (a LayerNorm does
  7 per element). The benchmark adds it to `matmul` for the achieved GFLOP/s of a model.
- `elements_written`: elements the non-matmul operators of an inference forward pass write (a LayerNorm writes its
  output plus a mean and a reciprocal std per token): the memory traffic of the complexity analysis's time model,
  within 10 % of what its `TorchDispatchMode` counts (the constants follow the implementation's operator list).
- `saved_floats`: float elements autograd keeps for the backward pass of a training forward pass (exact);
  `saved_floats_per_model`: what is kept once for all layers (the Wave token mask).

The last two are derived for the layouts docs/complexity.md measures (Wave: `real_imag` readout with a token
mask; BERT: eager attention, or SDPA, with attention dropout > 0 or SDPA without it) and are None elsewhere.
`wave_flops` and `bert_flops` add the model around the layers (embeddings, pooling, classifier).
"""

ADAMW_FLOPS_PER_PARAMETER = 14  # moments, bias corrections, sqrt, division, weight decay, update


def matmul_flops(tokens: int, fan_in: int, fan_out: int) -> int:
    return 2 * tokens * fan_in * fan_out  # the product of a Linear; its bias is counted as element-wise work


def layer_norm_flops(tokens: int, width: int) -> int:
    return 7 * tokens * width  # mean, subtract, square, mean, scale, gamma, beta


def wave_linears(hidden: int, ffn: int, readout: str) -> list[tuple[str, int, int]]:
    """(name, fan_in, fan_out) of one Wave layer's `Linear`s: w and w' in one `Linear(d, 2d)`, the readout g
    (`Linear(r, d)`, r = 2d for `real_imag`, else d) and the feed-forward block if f > 0."""
    d = hidden
    linears = [("projection", d, 2 * d), ("readout", 2 * d if readout == "real_imag" else d, d)]
    if ffn > 0:
        linears += [("ffn_in", d, ffn), ("ffn_out", ffn, d)]
    return linears


def wave_layer(
    batch: int,
    length: int,
    hidden: int,
    ffn: int = 0,
    mode: str = "modulation",
    readout: str = "real_imag",
    implementation: str = "fused",
    masked: bool = True,
) -> dict:
    """One `WaveLayer`. Element-wise FLOPs: per variant square, token sum, subtract, clamp, +eps, sqrt (6 n d,
    twice), the wave itself (6 n d modulation, 2 n d interference), |Z| for the magnitude readout (4 n d), the
    masks (3 n d), biases, dropout, residual and LayerNorm (11 n d); feed-forward: 2 n f + 3 n d + LayerNorm."""
    n, d, f = batch * length, hidden, ffn
    products = {name: matmul_flops(n, fan_in, fan_out) for name, fan_in, fan_out in wave_linears(d, f, readout)}
    wave = 2 * 6 * n * d + (6 if mode == "modulation" else 2) * n * d
    wave += 4 * n * d if readout == "magnitude" else 0
    wave += 3 * n * d if masked else 0  # zero the pads after the projection (2d wide) and after the readout
    costs = {
        "matmul": {
            "projections": products["projection"],
            "readout": products["readout"],
            "feed_forward": products.get("ffn_in", 0) + products.get("ffn_out", 0),
        },
        "elementwise_flops": {
            "wave": wave,
            "bias_norm_residual": 2 * n * d + n * d + n * d + layer_norm_flops(n, d),
            "feed_forward": 2 * n * f + 3 * n * d + layer_norm_flops(n, d) if f > 0 else 0,  # biases, gelu, ...
        },
        "elements_written": None,
        "saved_floats": None,
        "saved_floats_per_model": None,
    }
    if readout == "real_imag" and masked:  # docs/complexity.md, per text: then times B
        t = length
        elements = (21 if mode == "modulation" else 19) * t * d + 2 * t + 2 * d
        saved = 11 * t * d + 2 * t if implementation == "eager" else 7 * t * d + 2 * t + 2 * d
        if f:
            elements += t * f + 2 * t * d + 2 * t
            saved += 3 * t * d + 2 * t * f + 2 * t
        costs.update(elements_written=batch * elements, saved_floats=batch * saved, saved_floats_per_model=n)
    return costs


def bert_layer(
    batch: int, length: int, hidden: int, heads: int, ffn: int, attention: str = "sdpa", attention_dropout: float = 0.1
) -> dict:
    """One `BertLayer`: Q, K, V and output projections, attention products 2 x 2 B T^2 d (Q K^T and A V, all
    heads), feed-forward; softmax 5 B h T^2 (scale, max, exp, sum, divide), biases, residuals and LayerNorms."""
    n, d, f, t, h = batch * length, hidden, ffn, length, heads
    if attention == "eager":  # scaling and softmax write h T^2 each
        elements = 2 * h * t * t + 4 * t * d + t * f + 4 * t
    else:  # the fused kernel writes its output and one log-sum-exp per head and token
        elements = 5 * t * d + t * f + h * t + 4 * t
    if attention_dropout > 0:  # eager attention, and SDPA, which then falls back to the same math
        saved = 10 * t * d + 2 * t * f + 3 * h * t * t + 4 * t
    else:  # SDPA's fused kernel keeps no T x T tensor
        saved = 10 * t * d + 2 * t * f + h * t + 4 * t
    return {
        "matmul": {
            "qkv_output": matmul_flops(n, d, 3 * d) + matmul_flops(n, d, d),
            "attention": 2 * 2 * batch * t * t * d,
            "feed_forward": matmul_flops(n, d, f) + matmul_flops(n, f, d),
        },
        "elementwise_flops": {
            "softmax": 5 * batch * h * t * t,
            "bias_norm_residual": 4 * n * d + 2 * (n * d + layer_norm_flops(n, d)),
            "feed_forward": 2 * n * f + n * d,  # bias and gelu, output bias
        },
        "elements_written": batch * elements,
        "saved_floats": batch * saved,
        "saved_floats_per_model": 0,
    }


def wave_flops(config, batch_size: int, length: int, masked: bool = True) -> dict:
    """Forward FLOPs of a `WaveForSequenceClassification` by component: its layers (`wave_layer`), the position
    add and mean pooling (3 n d) and the classifier (2 B d c)."""
    d = config.hidden_size
    layer = wave_layer(batch_size, length, d, config.intermediate_size, config.wave_mode, config.wave_readout,
                       getattr(config, "wave_implementation", "fused"), masked)  # fmt: skip
    matmul = {**_times(layer["matmul"], config.num_hidden_layers), "classifier": 2 * batch_size * d * config.num_labels}
    elementwise = {**_times(layer["elementwise_flops"], config.num_hidden_layers),
                   "embeddings_pooling": 3 * batch_size * length * d}  # fmt: skip
    return _flop_summary(matmul, elementwise)


def bert_flops(config, batch_size: int, length: int) -> dict:
    """Forward FLOPs of a `BertForSequenceClassification`: embeddings, its layers (`bert_layer`), pooler, classifier."""
    n, d = batch_size * length, config.hidden_size
    layer = bert_layer(batch_size, length, d, config.num_attention_heads, config.intermediate_size)
    matmul = {**_times(layer["matmul"], config.num_hidden_layers),
              "pooler_classifier": 2 * batch_size * d * d + 2 * batch_size * d * config.num_labels}  # fmt: skip
    elementwise = {**_times(layer["elementwise_flops"], config.num_hidden_layers),
                   "embeddings": 2 * n * d + layer_norm_flops(n, d)}  # fmt: skip
    return _flop_summary(matmul, elementwise)


def train_step_flops(counts: dict, parameters: int) -> dict:
    """`counts` (a `wave_flops` / `bert_flops` result) with the optimiser and the training step added: backward =
    2 x forward (each product needs a gradient for its input and one for its weight), AdamW per parameter."""
    counts["optimizer"] = ADAMW_FLOPS_PER_PARAMETER * parameters
    counts["train_step"] = 3 * counts["forward"] + counts["optimizer"]
    return counts


def _times(components: dict, layers: int) -> dict:
    return {name: layers * flops for name, flops in components.items()}


def _flop_summary(matmul: dict, elementwise: dict) -> dict:
    total_matmul, total_elementwise = sum(matmul.values()), sum(elementwise.values())
    return {
        "matmul": matmul,
        "elementwise": elementwise,
        "forward_matmul": total_matmul,
        "forward_elementwise": total_elementwise,
        "forward": total_matmul + total_elementwise,
    }
