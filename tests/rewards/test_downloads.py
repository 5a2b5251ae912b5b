"""Model folders (reward models, policies) and charts download as files: zip / SVG attachments, nosniff,
CSP default-src 'none', safe names; researchers of the project only; symbolic links never followed."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ElementTree
import zipfile

import pytest

from annotate.models import User
from rewards.models import RewardModel
from tests.factories import make_project, make_user
from training.models import Loop, Policy, Round

pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert(1)</script> "x" & y'


def attachment_name(response) -> str:
    match = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', response["Content-Disposition"])
    assert match, response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'"
    return match.group(1)


def model_folder(root, secret):
    folder = root / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "bert"}')
    (folder / "sub" / "model.safetensors").write_bytes(b"\0weights" * 100)
    (folder / "stolen").symlink_to(secret)  # a link out of the folder is never followed
    return folder


@pytest.fixture
def setup(tmp_path, client):
    researcher, outsider = (
        make_user("res-dl", role=User.Role.RESEARCHER),
        make_user("res-other", role=User.Role.RESEARCHER),
    )
    project = make_project(name=HOSTILE, researchers=[researcher])
    make_project(name="other", researchers=[outsider])
    secret = tmp_path / "secret.txt"
    secret.write_text("server secret")
    folder = model_folder(tmp_path, secret)
    curves = {
        "train": [{"step": i, "loss": 1 / (i + 1), "accuracy": 0.5 + i / 40} for i in range(10)],
        "eval": [{"step": 9, "loss": 0.3, "accuracy": 0.8}],
    }
    reward_model = RewardModel.objects.create(
        project=project, version=3, base_model="tiny", status="ready", artifact_path=str(folder), curves=curves
    )
    policy = Policy.objects.create(
        project=project, version=2, name=HOSTILE, method="base", status="ready", artifact_path=str(folder)
    )
    Loop.objects.create(project=project, reference=policy, current=policy)
    Round.objects.create(
        project=project,
        number=4,
        method="dpo",
        state="done",
        policy=policy,
        metrics={
            "eval": {
                "mean_reward": 0.4,
                "kl_to_reference": 0.3,
                "mean_length_tokens": 26.0,
                "win_rate_vs_previous": 0.6,
                "win_rate_vs_reference": 0.7,
            }
        },
    )
    client.force_login(researcher)
    return client, project, reward_model, policy, outsider


def test_a_reward_model_and_a_policy_download_as_zips_without_following_links(setup):
    client, project, reward_model, policy, _ = setup
    for url, name in (
        (
            f"/projects/{project.pk}/reward-models/{reward_model.pk}/artifact.zip",
            "prefloop-script-alert-1-script-x-y-reward-model-v3.zip",
        ),
        (
            f"/projects/{project.pk}/policies/{policy.pk}/artifact.zip",
            "prefloop-script-alert-1-script-x-y-policy-v2.zip",
        ),
    ):
        response = client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "application/zip"
        assert attachment_name(response) == name
        archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
        root = name.removesuffix(".zip")
        assert sorted(archive.namelist()) == [f"{root}/config.json", f"{root}/sub/model.safetensors"]
        assert archive.read(f"{root}/sub/model.safetensors") == b"\0weights" * 100


@pytest.mark.parametrize(
    "path, chart",
    [
        ("reward-models/{rm}/charts/loss.svg", "reward-model-v3-loss"),
        ("reward-models/{rm}/charts/accuracy.svg", "reward-model-v3-accuracy"),
        ("loop/charts/reward_kl.svg", "loop-reward-kl-r4"),
        ("loop/charts/win_rate.svg", "loop-win-rate-r4"),
    ],
)
def test_charts_download_as_standalone_svg_files(setup, path, chart):
    client, project, reward_model, *_ = setup
    response = client.get(f"/projects/{project.pk}/" + path.format(rm=reward_model.pk))
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert attachment_name(response) == f"prefloop-script-alert-1-script-x-y-{chart}.svg"
    svg = ElementTree.fromstring(response.content)  # well-formed XML, an SVG root, nothing executable
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    assert not [e for e in svg.iter() if e.tag.endswith("script") or any(a.startswith("on") for a in e.attrib)]


def test_downloads_are_for_the_projects_researchers_and_existing_things_only(setup, client):
    _, project, reward_model, policy, outsider = setup
    urls = [
        f"/projects/{project.pk}/reward-models/{reward_model.pk}/artifact.zip",
        f"/projects/{project.pk}/policies/{policy.pk}/artifact.zip",
        f"/projects/{project.pk}/reward-models/{reward_model.pk}/charts/loss.svg",
        f"/projects/{project.pk}/loop/charts/reward.svg",
    ]
    client.force_login(outsider)
    assert [client.get(url).status_code for url in urls] == [404] * 4
    client.logout()
    assert all(client.get(url).status_code == 302 for url in urls)  # to the sign-in page


def test_unknown_charts_and_unfinished_versions_are_not_found(setup):
    client, project, reward_model, policy, _ = setup
    assert client.get(f"/projects/{project.pk}/loop/charts/secret.svg").status_code == 404
    RewardModel.objects.filter(pk=reward_model.pk).update(status="training")
    assert client.get(f"/projects/{project.pk}/reward-models/{reward_model.pk}/artifact.zip").status_code == 404
    Policy.objects.filter(pk=policy.pk).update(artifact_path="/nonexistent/policy")
    assert client.get(f"/projects/{project.pk}/policies/{policy.pk}/artifact.zip").status_code == 410


def test_a_model_folder_above_the_download_limit_is_refused(setup, settings):
    client, project, reward_model, *_ = setup
    settings.PREFLOOP_MAX_ARTIFACT_DOWNLOAD_BYTES = 100
    response = client.get(f"/projects/{project.pk}/reward-models/{reward_model.pk}/artifact.zip")
    assert response.status_code == 413 and b"more than the 100" in response.content


def test_the_pages_link_every_download(setup):
    client, project, reward_model, policy, _ = setup
    rewards_page = client.get(f"/projects/{project.pk}/reward-models/").content.decode()
    loop_page = client.get(f"/projects/{project.pk}/loop/").content.decode()
    assert f"/projects/{project.pk}/reward-models/{reward_model.pk}/artifact.zip" in rewards_page
    assert f"/projects/{project.pk}/reward-models/{reward_model.pk}/charts/accuracy.svg" in rewards_page
    assert f"/projects/{project.pk}/policies/{policy.pk}/artifact.zip" in loop_page
    assert f"/projects/{project.pk}/loop/charts/length.svg" in loop_page
