"""Distributed training on CPU: two synchronised processes over gloo, what a multi-GPU user gets on two GPUs.

Each distributed run is checked against a single-process run that sees the same global batches:
- world size 2 and a DistributedDataParallel (or FSDP) wrapper on every rank, with find_unused_parameters=False;
- each rank trains on its own half of every global batch: the rows of rank 0 and rank 1 at step k are disjoint and
  together are the rows of step k of a single process with twice the per-device batch. Both samplers draw one
  permutation per epoch from the seed (Accelerate's SeedableRandomSampler, also under Trainer), and rank r takes
  the r-th of each pair of consecutive per-device batches (BatchSamplerShard), so the global batches match exactly;
- the parameters are bit-identical on both ranks after training, and equal (float tolerance: padding to a different
  length and the all-reduce change the summation order) to the single-process run with dropout 0 and the same seed.
  Two unsynchronised processes (the trap of `accelerate launch --cpu`) would each match a single process with the
  per-device batch instead, and fail the comparison.

Run as a script, this file is the driver the launchers start: `python tests/examples/test_distributed.py MODE OUT ARGS`
runs `run_classification.main` (MODE trainer), `train_accelerate.main` (accelerate) or a `fully_shard` loop (fsdp),
records what each rank saw and writes `OUT/rank<r>.pt`.

Run: `OMP_NUM_THREADS=1 python -m pytest tests/examples/test_distributed.py -q` (about 80 s of CPU time in all: 9 processes).
"""

import csv
import hashlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

import pytest
import torch
from safetensors.torch import load_file

from example_scripts import load_example
from modeling_wave import WaveConfig, WaveForSequenceClassification
from modeling_wave.configuration_wave import POOLINGS, POSITION_EMBEDDING_TYPES, WAVE_MODES, WAVE_READOUTS

PYTHON = sys.executable
BIN = Path(sys.executable).parent
PER_DEVICE_BATCH = 8  # 2 ranks x 8 = the single process's 16
TRAIN_SAMPLES = 128  # a multiple of the global batch: no partial last batch; 8 steps per epoch
EPOCHS = 2
TOLERANCE = dict(rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Data, config and the commands
# ---------------------------------------------------------------------------------------------------------------

POSITIVE = "good great excellent wonderful superb lovely moving funny".split()
NEGATIVE = "bad awful terrible boring dull poor weak silly".split()
FILLER = "the movie film story actor plot scene was and it a of this with cast music end".split()


def write_reviews(folder: Path, seed: int = 0):
    """A tiny sentiment CSV (train / test, columns text,label) whose texts have 3 to 34 words: padding varies."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", 200), ("test", 40)):
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for i in range(size):
                label = i % 2
                words = [rng.choice(FILLER) for _ in range(rng.randint(2, 30))]
                for _ in range(rng.randint(1, 4)):
                    words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
                writer.writerow([" ".join(words), label])


def tiny_config() -> dict:
    """Hidden 32, one Wave block, no dropout: runs are deterministic functions of the seed and the batches."""
    return {
        "model_type": "wave",
        "vocab_size": 30522,  # the BERT uncased tokenizer's
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "intermediate_size": 0,
        "hidden_dropout_prob": 0.0,
        "max_position_embeddings": 64,
    }


def training_args(data_dir: Path, config_path: Path, output_dir: Path, batch_size: int, *extra: str) -> list[str]:
    return [
        "--config_name", str(config_path),
        "--data_dir", str(data_dir),
        "--max_train_samples", str(TRAIN_SAMPLES),
        "--max_eval_samples", "32",
        "--max_seq_length", "64",
        "--output_dir", str(output_dir),
        "--do_train", "true",
        "--per_device_train_batch_size", str(batch_size),
        "--per_device_eval_batch_size", "32",
        "--learning_rate", "0.003",
        "--num_train_epochs", str(EPOCHS),
        "--eval_strategy", "epoch",
        "--logging_steps", "4",
        "--report_to", "none",
        "--seed", "7",
        "--use_cpu", "true",
        "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(tmp_root: Path) -> dict:
    """Offline, one thread per process, every cache in the test's folder, nothing inherited from a launcher."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "FSDP_", "PET_"))}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    env.update(
        HF_HOME=str(tmp_root / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        # The children run this file as a script: its shared helpers (example_scripts, ...) sit in tests/.
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH")])),
    )
    return env


def run(command: list[str], workspace: Path, name: str):
    """Run a launcher (or one process) to the end; its output goes to `workspace/<name>.log`."""
    log = workspace / f"{name}.log"
    with open(log, "w") as handle:
        completed = subprocess.run(
            command, cwd=REPO_ROOT, env=child_env(workspace), stdout=handle, stderr=subprocess.STDOUT, timeout=600
        )
    if completed.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({completed.returncode}):\n{log.read_text()[-6000:]}")


def single(script: list[str]) -> list[str]:
    return [PYTHON, *script]


def torchrun(script: list[str]) -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
            str(free_port()), *script]  # fmt: skip


def accelerate_launch(config_file: str, script: list[str]) -> list[str]:
    return [str(BIN / "accelerate"), "launch", "--config_file", str(REPO_ROOT / config_file),
            "--main_process_port", str(free_port()), *script]  # fmt: skip


def driver(mode: str, out: Path, args: list[str]) -> list[str]:
    return [str(Path(__file__).resolve()), mode, str(out), *args]


def load_ranks(out: Path) -> list[dict]:
    records = [torch.load(path, weights_only=False) for path in sorted(out.glob("rank*.pt"))]
    assert records, f"no rank file in {out}"
    return records


# ---------------------------------------------------------------------------------------------------------------
# Runs (one of each per test session)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    write_reviews(root / "data")
    (root / "config.json").write_text(json.dumps(tiny_config()))
    return root


def trainer_args(workspace: Path, name: str, batch_size: int) -> list[str]:
    return training_args(workspace / "data", workspace / "config.json", workspace / name, batch_size,
                         "--save_strategy", "no")  # fmt: skip


def accelerate_args(workspace: Path, name: str, batch_size: int, *extra: str) -> list[str]:
    return training_args(workspace / "data", workspace / "config.json", workspace / name, batch_size,
                         "--save_strategy", "steps", "--save_steps", "4", *extra)  # fmt: skip


@pytest.fixture(scope="module")
def trainer_runs(workspace):
    """run_classification.py (Trainer, use_cpu) under `torchrun --nproc_per_node 2`, and on one process."""
    two, one = workspace / "trainer-2", workspace / "trainer-1"
    run(torchrun(driver("trainer", two, trainer_args(workspace, "out-trainer-2", PER_DEVICE_BATCH))), workspace, "t2")
    run(single(driver("trainer", one, trainer_args(workspace, "out-trainer-1", 2 * PER_DEVICE_BATCH))), workspace, "t1")
    return load_ranks(two), load_ranks(one)


@pytest.fixture(scope="module")
def accelerate_runs(workspace):
    """train_accelerate.py under `accelerate launch` with the multi-process CPU config, and on one process."""
    two, one = workspace / "accelerate-2", workspace / "accelerate-1"
    command = driver("accelerate", two, accelerate_args(workspace, "out-accelerate-2", PER_DEVICE_BATCH))
    run(accelerate_launch("configuration/accelerate/multi-cpu.yaml", command), workspace, two.name)
    command = driver("accelerate", one, accelerate_args(workspace, "out-accelerate-1", 2 * PER_DEVICE_BATCH))
    run(single(command), workspace, one.name)
    return load_ranks(two), load_ranks(one)


# The main job's preset as shipped (MiniLM's token table, group_by_length, wide learning rate, sparse tables with
# LazyAdamW and sparse-aware clipping: DDP all-reduces their sparse gradients over gloo), with its model's dropouts at
# 0 and smaller hash tables, on the fixed schedule of the runs above rather than one derived from the data.
RECIPE = [
    "configuration/train/wave-recipe.json", "--schedule", "fixed", "--load_best_model_at_end", "false",
    "--config_overrides", "hidden_dropout_prob=0,ngram_dropout_prob=0,ngram_buckets=1000,wide_buckets=4096",
]  # fmt: skip


def recipe_args(workspace: Path, name: str, batch_size: int, *extra: str) -> list[str]:
    args = training_args(workspace / "data", workspace / "config.json", workspace / name, batch_size, *extra)
    config_at = args.index("--config_name")
    return RECIPE + args[:config_at] + args[config_at + 2 :]  # the preset's model config


@pytest.fixture(scope="module")
def recipe_runs(workspace):
    """The main preset with sparse tables: run_classification.py under torchrun and under `accelerate launch`,
    train_accelerate.py under `accelerate launch`, and each loop on one process."""
    records = {}
    for mode, launcher in (("trainer", "torchrun"), ("trainer", "accelerate"), ("accelerate", "accelerate")):
        name = f"recipe-{mode}-{launcher}"
        command = driver(mode, workspace / name, recipe_args(workspace, f"out-{name}", PER_DEVICE_BATCH,
                                                             "--save_strategy", "no"))  # fmt: skip
        if launcher == "torchrun":
            run(torchrun(command), workspace, name)
        else:
            run(accelerate_launch("configuration/accelerate/multi-cpu.yaml", command), workspace, name)
        records[mode, launcher] = load_ranks(workspace / name)
    for mode in ("trainer", "accelerate"):
        name = f"recipe-{mode}-1"
        args = recipe_args(workspace, f"out-{name}", 2 * PER_DEVICE_BATCH, "--save_strategy", "no")
        run(single(driver(mode, workspace / name, args)), workspace, name)
        records[mode, "single"] = load_ranks(workspace / name)
    return records


# ---------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------


def check_synchronised(ranks: list[dict], single: list[dict], wrapper: str):
    assert [r["rank"] for r in ranks] == [0, 1]
    for record in ranks:
        assert record["world_size"] == 2 and record["backend"] == "gloo"
        assert record["wrapper"] == wrapper
        if wrapper == "DistributedDataParallel":
            assert record["find_unused_parameters"] is False
    assert len(single) == 1 and single[0]["world_size"] == 1

    steps = EPOCHS * TRAIN_SAMPLES // (2 * PER_DEVICE_BATCH)
    rank_0, rank_1, one = ranks[0]["batches"], ranks[1]["batches"], single[0]["batches"]
    assert len(rank_0) == len(rank_1) == len(one) == steps
    for step, (rows_0, rows_1, rows) in enumerate(zip(rank_0, rank_1, one)):
        assert len(rows_0) == len(rows_1) == PER_DEVICE_BATCH
        assert not set(rows_0) & set(rows_1), f"step {step}: both ranks trained on the same texts"
        assert sorted(rows_0 + rows_1) == sorted(rows), f"step {step}: the global batch differs from one process's"

    state_0, state_1, reference = ranks[0]["state_dict"], ranks[1]["state_dict"], single[0]["state_dict"]
    assert state_0.keys() == state_1.keys() == reference.keys()
    for name, value in state_0.items():
        assert torch.equal(value, state_1[name]), f"{name} differs between the ranks"
        torch.testing.assert_close(value, reference[name], **TOLERANCE, msg=f"{name}: 2 ranks != 1 process")
    initial = single[0]["initial_state_dict"]
    assert any(not torch.allclose(reference[n], initial[n]) for n in initial), "training changed nothing"


def test_trainer_torchrun_runs_ddp_and_matches_one_process(trainer_runs):
    ranks, single = trainer_runs
    check_synchronised(ranks, single, "DistributedDataParallel")
    assert all(r["distributed_type"] == "MULTI_CPU" for r in ranks)


def test_accelerate_launch_multi_cpu_runs_ddp_and_matches_one_process(accelerate_runs):
    ranks, single = accelerate_runs
    check_synchronised(ranks, single, "DistributedDataParallel")
    assert all(r["distributed_type"] == "MULTI_CPU" for r in ranks)
    # Both ranks evaluated their half of the validation set; gather_for_metrics gave both the same whole result.
    assert ranks[0]["results"]["eval_samples"] == 32
    assert ranks[0]["results"]["eval_accuracy"] == ranks[1]["results"]["eval_accuracy"]


@pytest.mark.parametrize("mode, launcher", [("trainer", "torchrun"), ("trainer", "accelerate"),
                                            ("accelerate", "accelerate")])  # fmt: skip
def test_the_main_preset_with_sparse_tables_on_two_processes_matches_one_process(recipe_runs, mode, launcher):
    ranks, single = recipe_runs[mode, launcher], recipe_runs[mode, "single"]
    check_synchronised(ranks, single, "DistributedDataParallel")
    for record in (*ranks, *single):
        assert record["sparse_tables"] == ["wave.embeddings.word_embeddings", "wave.embeddings.ngram_embeddings", "wide"]
        assert record["optimizer"] == "LazyAdamW"


def test_accelerate_resume_from_mid_epoch_checkpoint(workspace, accelerate_runs):
    """`--resume_from_checkpoint` (load_state) in the middle of epoch 2 ends where the uninterrupted run ended."""
    _, [uninterrupted] = accelerate_runs
    checkpoint = workspace / "out-accelerate-1" / "checkpoint-12"  # 8 steps per epoch: half-way through epoch 2
    assert checkpoint.is_dir()
    resumed = workspace / "accelerate-resumed"
    args = accelerate_args(workspace, "out-accelerate-resumed", 2 * PER_DEVICE_BATCH,
                           "--resume_from_checkpoint", str(checkpoint))  # fmt: skip
    run(single(driver("accelerate", resumed, args)), workspace, resumed.name)
    record = load_ranks(resumed)[0]
    assert len(record["batches"]) == 4  # steps 13-16 only
    assert record["batches"] == uninterrupted["batches"][12:]
    for name, value in record["state_dict"].items():
        torch.testing.assert_close(value, uninterrupted["state_dict"][name], rtol=0, atol=1e-6, msg=name)


def test_accelerate_load_best_model_at_end_ends_with_the_best_checkpoint(workspace):
    """As Trainer: the best evaluation's checkpoint survives `save_total_limit` and is the model at the end. The
    "best" here is the highest validation loss (`greater_is_better`), so that it is not the last checkpoint."""
    record_dir, output_dir = workspace / "accelerate-best", workspace / "out-accelerate-best"
    args = training_args(workspace / "data", workspace / "config.json", output_dir, 2 * PER_DEVICE_BATCH,
                         "--num_train_epochs", "1", "--eval_strategy", "steps", "--eval_steps", "2",
                         "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "1",
                         "--load_best_model_at_end", "true", "--metric_for_best_model", "loss",
                         "--greater_is_better", "true")  # fmt: skip
    run(single(driver("accelerate", record_dir, args)), workspace, record_dir.name)
    record = load_ranks(record_dir)[0]
    kept = sorted(output_dir.glob("checkpoint-*"), key=lambda folder: int(folder.name.split("-")[1]))
    assert [folder.name for folder in kept][-1] == "checkpoint-8" and len(kept) == 2  # the best, and the last
    best, last = (load_file(folder / "model.safetensors") for folder in kept)
    for name, value in record["state_dict"].items():
        assert torch.equal(value, best[name]), f"{name}: the final model is not the best checkpoint's"
    assert any(not torch.equal(best[name], last[name]) for name in best)
    assert record["results"]["train_steps"] == 8


def test_fsdp2_on_cpu_shards_wave_layers_and_matches_one_process(workspace):
    """FSDP2 (`fully_shard`) on CPU over gloo, each WaveLayer (`_no_split_modules`) its own unit: torch runs it and
    it matches one process. Accelerate does not: see `fsdp_driver` and docs/distributed.md."""
    out = workspace / "fsdp-2"
    run(torchrun(driver("fsdp", out, [])), workspace, out.name)
    ranks = load_ranks(out)
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    for record in ranks:
        assert record["wrapped"] == ["wave.encoder.layer.0", "wave.encoder.layer.1", ""]
        assert record["local_numel"] < record["full_numel"]  # each rank holds a shard only
    reference = fsdp_training(world_size=1, rank=0)
    for name, value in ranks[0]["state_dict"].items():
        assert torch.equal(value, ranks[1]["state_dict"][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(value, reference[name], **TOLERANCE, msg=f"{name}: FSDP != 1 process")


def test_accelerate_configs():
    """Every launcher config loads with Accelerate's own reader, and holds the settings the docs rely on."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    folder = REPO_ROOT / "configuration" / "accelerate"
    configs = {path.stem: load_config_from_file(str(path)) for path in folder.glob("*.yaml")}
    assert set(configs) == {"single-gpu", "multi-gpu-ddp", "fsdp", "deepspeed-zero2", "multi-cpu", "fsdp-cpu"}
    # Several CPU processes: the MULTI_GPU launcher with use_cpu (MULTI_CPU would start one process).
    assert configs["multi-cpu"].distributed_type == DistributedType.MULTI_GPU and configs["multi-cpu"].use_cpu
    assert configs["multi-cpu"].num_processes == 2 and configs["multi-cpu"].mixed_precision == "no"
    for name in ("single-gpu", "multi-gpu-ddp", "fsdp", "deepspeed-zero2"):
        assert not configs[name].use_cpu and configs[name].mixed_precision == "bf16"
    for name in ("fsdp", "fsdp-cpu"):  # no class list: Accelerate wraps the model's `_no_split_modules`
        fsdp = configs[name].fsdp_config
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and fsdp["fsdp_version"] == 2
        assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp
    assert WaveForSequenceClassification._no_split_modules == ["WaveLayer"]
    assert configs["deepspeed-zero2"].deepspeed_config["zero_stage"] == 2


@pytest.mark.parametrize(
    "variant",
    [
        dict(wave_mode=mode, wave_readout=readout, pooling=pooling, position_embedding_type=positions,
             intermediate_size=feed_forward, num_hidden_layers=layers)  # fmt: skip
        for mode, readout, pooling, positions, feed_forward, layers in itertools.product(
            WAVE_MODES, WAVE_READOUTS, POOLINGS, POSITION_EMBEDDING_TYPES, (0, 37), (1, 2)
        )
        if (mode, readout) != ("modulation", "magnitude")
    ],
    ids=lambda v: "-".join(str(x) for x in v.values()),
)
def test_every_parameter_gets_a_gradient(variant):
    """What DDP's find_unused_parameters=False relies on: one backward reaches every parameter, for every variant."""
    torch.manual_seed(0)
    config = WaveConfig(vocab_size=99, hidden_size=32, max_position_embeddings=64, num_labels=3, **variant)
    model = WaveForSequenceClassification(config)
    input_ids = torch.randint(1, 99, (4, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0  # right padding
    attention_mask[2, :3] = 0  # left padding
    model(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


# ---------------------------------------------------------------------------------------------------------------
# The driver, run by the launchers (one process per rank)
# ---------------------------------------------------------------------------------------------------------------


def row_keys(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[str]:
    """One key per text of a batch, independent of how much padding the batch gave it."""
    return [
        hashlib.sha1(ids[mask.bool()].numpy().tobytes()).hexdigest()[:16]
        for ids, mask in zip(input_ids.cpu(), attention_mask.cpu())
    ]


def record_training_batches(model: torch.nn.Module, batches: list):
    def hook(module, args, kwargs):
        if module.training:
            batches.append(row_keys(kwargs["input_ids"], kwargs["attention_mask"]))

    model.register_forward_pre_hook(hook, with_kwargs=True)


def distributed_facts() -> dict:
    import torch.distributed as dist

    if not dist.is_initialized():
        return {"rank": 0, "world_size": 1, "backend": None}
    return {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "backend": dist.get_backend()}


def wrapper_facts(wrapped: torch.nn.Module) -> dict:
    facts = {"wrapper": type(wrapped).__name__}
    if isinstance(wrapped, torch.nn.parallel.DistributedDataParallel):
        facts["find_unused_parameters"] = wrapped.find_unused_parameters
    return facts


def training_facts(model: torch.nn.Module, optimizer) -> dict:
    """Which tables train sparse, and the optimizer's class (inside Accelerate's wrapper)."""
    sparse = [name for name, module in model.named_modules() if getattr(module, "sparse", False)]
    return {"sparse_tables": sparse, "optimizer": type(getattr(optimizer, "optimizer", optimizer)).__name__}


def save_record(out: Path, record: dict):
    out.mkdir(parents=True, exist_ok=True)
    torch.save(record, out / f"rank{record['rank']}.pt")


def trainer_driver(out: Path, args: list[str]):
    """run_classification.main, with its Trainer recorded: what each rank trained on, and its final weights."""
    import wave_examples.training

    run_classification = load_example("run_classification")
    seen = {}

    class RecordingTrainer(wave_examples.training.ClassificationTrainer):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            seen["trainer"], seen["batches"], seen["facts"] = self, [], distributed_facts()
            seen["initial_state_dict"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            record_training_batches(self.model, seen["batches"])

    wave_examples.training.ClassificationTrainer = RecordingTrainer  # what `prepare_classification` builds
    results = run_classification.main(args)
    trainer = seen["trainer"]
    save_record(out, {
        **seen["facts"],
        **wrapper_facts(trainer.model_wrapped),
        **training_facts(trainer.model, trainer.optimizer),
        "distributed_type": trainer.accelerator.distributed_type.value,
        "batches": seen["batches"],
        "initial_state_dict": seen["initial_state_dict"],
        "state_dict": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "results": results,
    })  # fmt: skip


def accelerate_driver(out: Path, args: list[str]):
    """train_accelerate.main, with its Accelerator recorded: the prepared model, what each rank trained on."""
    train_accelerate = load_example("train_accelerate")

    seen = {}

    class RecordingAccelerator(train_accelerate.Accelerator):
        def prepare(self, *objects, **kw):
            model = objects[0]
            seen["initial_state_dict"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            seen["batches"], seen["facts"] = [], distributed_facts()  # end_training() destroys the process group
            record_training_batches(model, seen["batches"])
            prepared = super().prepare(*objects, **kw)
            seen["accelerator"], seen["wrapped"], seen["optimizer"] = self, prepared[0], prepared[1]
            return prepared

    train_accelerate.Accelerator = RecordingAccelerator
    results = train_accelerate.main(args)
    accelerator, wrapped = seen["accelerator"], seen["wrapped"]
    state_dict = accelerator.unwrap_model(wrapped).state_dict()
    save_record(out, {
        **seen["facts"],
        **wrapper_facts(wrapped),
        **training_facts(accelerator.unwrap_model(wrapped), seen["optimizer"]),
        "distributed_type": accelerator.distributed_type.value,
        "batches": seen["batches"],
        "initial_state_dict": seen["initial_state_dict"],
        "state_dict": {k: v.detach().clone() for k, v in state_dict.items()},
        "results": {k: v for k, v in results.items() if k != "train_log_history"},
    })  # fmt: skip


def fsdp_training(world_size: int, rank: int, facts: dict | None = None) -> dict:
    """Six AdamW steps on fixed global batches of 8 texts, rank r taking rows [4r, 4r + 4) of each; with
    world_size 2 the model is sharded by `fully_shard`, each class of `_no_split_modules` its own unit."""
    torch.manual_seed(0)
    config = WaveConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, intermediate_size=37,
                        hidden_dropout_prob=0.0, num_labels=2)  # fmt: skip
    model = WaveForSequenceClassification(config)
    if world_size > 1:
        from torch.distributed.fsdp import fully_shard

        wrapped = [n for n, m in model.named_modules() if type(m).__name__ in model._no_split_modules]
        for name in wrapped:
            fully_shard(model.get_submodule(name))
        fully_shard(model)
        facts.update(wrapped=wrapped + [""], full_numel=sum(p.numel() for p in model.parameters()))
        facts["local_numel"] = sum(p.to_local().numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    share = 8 // world_size
    for _ in range(6):
        input_ids = torch.randint(1, 99, (8, 11), generator=generator)
        lengths = torch.randint(2, 12, (8,), generator=generator)
        attention_mask = (torch.arange(11) < lengths[:, None]).long()
        labels = torch.randint(0, 2, (8,), generator=generator)
        rows = slice(rank * share, (rank + 1) * share)
        loss = model(input_ids=input_ids[rows], attention_mask=attention_mask[rows], labels=labels[rows]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    if world_size == 1:
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    # Gathered on every rank (cpu_offload=True would give the full tensors to rank 0 only).
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def fsdp_driver(out: Path, args: list[str]):
    """torch's FSDP2 directly: Accelerate 1.15 turns an FSDP config into plain DDP on CPU (MULTI_CPU)."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    facts = distributed_facts()
    state_dict = fsdp_training(facts["world_size"], facts["rank"], facts)
    save_record(out, {**facts, "state_dict": state_dict})
    dist.barrier()
    dist.destroy_process_group()
    # After FSDP2 on gloo, the interpreter's shutdown aborted about one run in six ("terminate called without an
    # active exception"), after the record was saved; leaving at once skips that shutdown.
    os._exit(0)


if __name__ == "__main__":
    mode, out, *rest = sys.argv[1:]  # usage: test_distributed.py {trainer,accelerate,fsdp} OUT [ARGS]
    {"trainer": trainer_driver, "accelerate": accelerate_driver, "fsdp": fsdp_driver}[mode](Path(out), rest)
