"""What the tests share: the tiny `WaveModelTester` (as Transformers' `tests/models/*/test_modeling_*.py`), the
padded-batch builder `pad_texts`, `randomize_parameters`, the paper's trigonometric wave (a float64 reference), tiny
causal LMs, and the child process that loads checkpoints with `trust_remote_code` where `modeling_wave` cannot be
imported. On `sys.path` through `pythonpath = tests` (setup.cfg), so every test folder imports it by name.
"""

import itertools
import json
import textwrap

import torch
from fresh_python import run_outside_the_checkout
from hypothesis import settings
from torch import nn

from modeling_wave import WaveConfig, WaveForCausalLM, WaveForSequenceClassification, WaveModel
from modeling_wave.configuration_wave import POOLINGS, POSITION_EMBEDDING_TYPES, WAVE_MODES, WAVE_READOUTS
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput

# Every (mode, readout) pair the config accepts: modulation + magnitude is refused (|Z Z'| = G G' for every token).
WAVES = [(m, r) for m in WAVE_MODES for r in WAVE_READOUTS if (m, r) != ("modulation", "magnitude")]
# Every valid combination of the options that change the forward pass: 5 waves x 2 poolings x 3 positions = 30.
VARIANTS = [
    dict(wave_mode=m, wave_readout=r, pooling=p, position_embedding_type=pe)
    for (m, r), p, pe in itertools.product(WAVES, POOLINGS, POSITION_EMBEDDING_TYPES)
]


def variant_id(variant):
    return "-".join(str(v) for v in variant.values())


def wave_kwargs(wave):
    return dict(wave_mode=wave[0], wave_readout=wave[1])


# Settings of every property-based test: few examples, reproducible, no time limit on a shared CPU.
PROPERTY_SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)


def pad_texts(texts, side="right", width=None, garbage_below=None, generator=None):
    """Texts (1-D id tensors) of different lengths as one padded batch, as a tokenizer makes it: `(input_ids,
    attention_mask)`, each (B, width). Pads go on `side` ("left" as `padding_side="left"`), with id 0, or with random
    ids below `garbage_below`: a model must ignore whatever the pads hold."""
    width = width or max(len(text) for text in texts)
    if garbage_below is None:
        input_ids = torch.zeros(len(texts), width, dtype=torch.long)
    else:
        input_ids = torch.randint(0, garbage_below, (len(texts), width), generator=generator)
    attention_mask = torch.zeros(len(texts), width, dtype=torch.long)
    for row, text in enumerate(texts):
        start = width - len(text) if side == "left" else 0
        input_ids[row, start : start + len(text)] = text
        attention_mask[row, start : start + len(text)] = 1
    return input_ids, attention_mask


class WaveModelTester:
    """Builds tiny configs and inputs, and checks one property of a model per `create_and_check_*` method."""

    # The tiny model every test starts from; a tester changes any config field: `WaveModelTester(pooling="cls")`.
    CONFIG_DEFAULTS = dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, intermediate_size=37, hidden_act="gelu",
        hidden_dropout_prob=0.1, max_position_embeddings=512, num_labels=3, initializer_range=0.02,
    )  # fmt: skip

    def __init__(self, batch_size=13, seq_length=7, **config_kwargs):
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.config_kwargs = {**self.CONFIG_DEFAULTS, **config_kwargs}

    def __getattr__(self, name):
        """`tester.hidden_size`, `tester.vocab_size`, ...: the values its configs get."""
        try:
            return self.__dict__["config_kwargs"][name]
        except KeyError:
            raise AttributeError(name) from None

    def get_config(self, **overrides):
        return WaveConfig(**{**self.config_kwargs, **overrides})

    def prepare_config_and_inputs(self, seed=0):
        """A config and a batch in which every row has 1..seq_length real tokens, padded on the left or the right."""
        generator = torch.Generator().manual_seed(seed)
        config = self.get_config()
        input_ids = torch.randint(1, self.vocab_size, (self.batch_size, self.seq_length), generator=generator)
        lengths = torch.randint(1, self.seq_length + 1, (self.batch_size,), generator=generator)
        lengths[0] = self.seq_length  # at least one row without padding
        attention_mask = torch.zeros(self.batch_size, self.seq_length, dtype=torch.long)
        for row, length in enumerate(lengths.tolist()):
            if row % 2:  # left padding
                attention_mask[row, self.seq_length - length :] = 1
            else:
                attention_mask[row, :length] = 1
        input_ids = input_ids.masked_fill(attention_mask == 0, config.pad_token_id)
        labels = {
            "single": torch.randint(0, self.num_labels, (self.batch_size,), generator=generator),
            "multi": torch.randint(0, 2, (self.batch_size, self.num_labels), generator=generator).float(),
            "regression": torch.randn(self.batch_size, generator=generator),
        }
        return config, {"input_ids": input_ids, "attention_mask": attention_mask}, labels

    def create_and_check_model(self, config, inputs):
        model = WaveModel(config).eval()
        for kwargs in (inputs, {"input_ids": inputs["input_ids"]}):
            result = model(**kwargs)
            assert isinstance(result, BaseModelOutputWithPooling)
            assert result.last_hidden_state.shape == (self.batch_size, self.seq_length, self.hidden_size)
            assert result.pooler_output.shape == (self.batch_size, self.hidden_size)
            assert result.hidden_states is None
            assert torch.isfinite(result.last_hidden_state).all() and torch.isfinite(result.pooler_output).all()

    def create_and_check_hidden_states(self, config, inputs):
        model = WaveModel(config).eval()
        result = model(**inputs, output_hidden_states=True)
        assert len(result.hidden_states) == self.num_hidden_layers + 1
        for hidden in result.hidden_states:
            assert hidden.shape == (self.batch_size, self.seq_length, self.hidden_size)
        torch.testing.assert_close(result.hidden_states[-1], result.last_hidden_state, rtol=0, atol=0)
        positions = (inputs["attention_mask"].cumsum(dim=-1) - 1).clamp_min(0)  # counted over real tokens
        embeddings = model.embeddings(inputs["input_ids"], positions)
        torch.testing.assert_close(result.hidden_states[0], embeddings)

    def create_and_check_tuple_outputs(self, config, inputs, labels):
        model = WaveForSequenceClassification(config).eval()
        as_dict = model(**inputs, labels=labels, output_hidden_states=True)
        as_tuple = model(**inputs, labels=labels, output_hidden_states=True, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 3
        torch.testing.assert_close(as_tuple[0], as_dict.loss)  # the loss comes first, as in BERT
        torch.testing.assert_close(as_tuple[1], as_dict.logits)
        assert len(as_tuple[2]) == len(as_dict.hidden_states) == self.num_hidden_layers + 1
        assert len(model(**inputs, return_dict=False)) == 1  # logits only

        base = model.wave
        base_dict = base(**inputs, output_hidden_states=True)
        base_tuple = base(**inputs, output_hidden_states=True, return_dict=False)
        assert len(base_tuple) == 3
        torch.testing.assert_close(base_tuple[0], base_dict.last_hidden_state)
        torch.testing.assert_close(base_tuple[1], base_dict.pooler_output)
        assert len(base(**inputs, return_dict=False)) == 2

    def create_and_check_for_sequence_classification(self, config, inputs, labels):
        model = WaveForSequenceClassification(config).eval()
        result = model(**inputs, labels=labels)
        assert isinstance(result, SequenceClassifierOutput)
        assert result.logits.shape == (self.batch_size, config.num_labels)
        assert result.loss.shape == () and torch.isfinite(result.loss)
        return result

    def create_and_check_save_load(self, config, inputs, tmp_path, model_class=WaveForSequenceClassification):
        model = model_class(config).eval()
        randomize_parameters(model)
        model.save_pretrained(tmp_path)
        loaded = model_class.from_pretrained(tmp_path).eval()
        for (name, saved), (loaded_name, restored) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert name == loaded_name
            torch.testing.assert_close(restored, saved, rtol=0, atol=0, msg=f"{name} changed on loading")
        first, second = model(**inputs), loaded(**inputs)
        for key in first:
            torch.testing.assert_close(second[key], first[key], rtol=0, atol=0)

    def create_and_check_padding_invariance(self, config, texts, pads, sides, garbage_pads, seed=0):
        """Logits of texts padded in one batch (pads on either side, any pad ids) equal those of each text alone."""
        torch.manual_seed(seed)
        model = WaveForSequenceClassification(config).eval()
        randomize_parameters(model, seed)
        alone = torch.cat([model(input_ids=text.unsqueeze(0)).logits for text in texts])  # (B, L)
        width = max(len(text) + pad for text, pad in zip(texts, pads))
        input_ids = torch.randint(0, config.vocab_size, (len(texts), width)) if garbage_pads else None
        if input_ids is None:
            input_ids = torch.full((len(texts), width), config.pad_token_id)
        attention_mask = torch.zeros(len(texts), width, dtype=torch.long)
        for row, (text, side) in enumerate(zip(texts, sides)):
            start = width - len(text) if side == "left" else 0
            input_ids[row, start : start + len(text)] = text
            attention_mask[row, start : start + len(text)] = 1
        padded = model(input_ids=input_ids, attention_mask=attention_mask).logits
        torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)

    def create_and_check_finite_outputs_and_gradients(self, model, **inputs):
        model.zero_grad()
        outputs = model(**inputs, output_hidden_states=True)
        for hidden in outputs.hidden_states:
            assert torch.isfinite(hidden).all()
        assert torch.isfinite(outputs.logits).all()
        assert torch.isfinite(outputs.loss)
        outputs.loss.backward()
        for name, param in model.named_parameters():
            if "inputs_embeds" in inputs and name.endswith("word_embeddings.weight"):
                continue  # not used
            assert param.grad is not None, f"{name} got no gradient"
            assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        if inputs.get("inputs_embeds") is not None and inputs["inputs_embeds"].requires_grad:
            assert torch.isfinite(inputs["inputs_embeds"].grad).all()
        return outputs


def randomize_parameters(model, seed=0):
    """Give every Linear and LayerNorm a non-zero bias (and random LayerNorm scales and pad embedding), so that
    nothing in a test relies on the zero biases of a fresh model: a bias is what turns masked pads into tokens."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.LayerNorm)):
                module.bias.copy_(torch.rand(module.bias.shape, generator=generator) - 0.5)
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight[module.padding_idx] = 0.1 * torch.randn(module.weight.shape[1], generator=generator)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            assert (module.bias != 0).all()
    return model



def paper_wave_operation(w, w_prime, mode):
    """Eqs. (1)-(7) as written in the paper, with complex numbers and trigonometry (float64 reference)."""

    def to_complex(x):
        G = torch.sqrt((x**2).sum(dim=1, keepdim=True))  # Eq. (1): L2 norm over the tokens, per dimension
        ratio = x / G
        alpha = torch.atan2(torch.sqrt((1 - ratio**2).clamp_min(0)), ratio)  # Eq. (2)
        return G * torch.exp(1j * alpha)  # Z = G exp(i alpha)

    z, z_prime = to_complex(w), to_complex(w_prime)
    z = z + z_prime if mode == "interference" else z * z_prime  # Eqs. (3)-(5) or (6)-(7)
    return z.real, z.imag



# Runs in the child: loads every checkpoint named in spec.json through its Auto class with trust_remote_code, runs it
# on the saved inputs (and `generate` for causal LMs), and saves the outputs. The package is blocked first.
REMOTE_CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["modeling_wave"] = None  # any `import modeling_wave` now raises ImportError

    import json
    from pathlib import Path

    import torch
    import transformers

    work = Path(sys.argv[1])
    spec = json.loads((work / "spec.json").read_text())
    report = {"classes": {}, "errors_without_trust": {}}
    try:
        import modeling_wave  # noqa: F401
        report["imported_local_package"] = True
    except ImportError:
        report["imported_local_package"] = False

    inputs = torch.load(work / "inputs.pt")
    outputs = {}
    for name, (auto_name, folder) in spec.items():
        auto_class = getattr(transformers, auto_name)
        try:
            auto_class.from_pretrained(work / folder)
            report["errors_without_trust"][name] = None
        except ValueError as error:
            report["errors_without_trust"][name] = str(error)
        model = auto_class.from_pretrained(work / folder, trust_remote_code=True).eval()
        report["classes"][name] = f"{type(model).__module__}.{type(model).__name__}"
        with torch.no_grad():
            outputs[name] = model(**inputs).logits
            if model.can_generate():
                outputs[name + "/generate"] = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    torch.save(outputs, work / "child_outputs.pt")
    (work / "report.json").write_text(json.dumps(report))
    """
)


def run_remote_child(work, tmp_path_factory, spec: dict, inputs: dict):
    """Run `REMOTE_CHILD` on the checkpoints of `spec` ({name: (Auto class name, folder under work)})."""
    (work / "spec.json").write_text(json.dumps(spec))
    torch.save(inputs, work / "inputs.pt")
    run_outside_the_checkout(REMOTE_CHILD, work, tmp_path_factory)
    return json.loads((work / "report.json").read_text()), torch.load(work / "child_outputs.pt")


def causal_tester(**kwargs):
    return WaveModelTester(hidden_dropout_prob=0.0, **kwargs)


def causal_lm(seed=0, **kwargs):
    """A tiny causal Wave LM with every bias and LayerNorm randomised (nothing relies on a fresh model's zeros)."""
    torch.manual_seed(seed)
    return randomize_parameters(WaveForCausalLM(causal_tester(**kwargs).get_config()), seed).eval()
