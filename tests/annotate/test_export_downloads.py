"""Downloads are files, never pages; the default export is TRL-ready (ties in a file of their own); hf over REST."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command

from annotate.export.rows import ExportFilters, ExportOptions
from annotate.export.writers import export_dataset
from annotate.models import User, Vote
from annotate.services.importing import import_file
from prefloop.downloads import download_filename, safe_name_part
from tests.annotate.test_export import read_jsonl, tricky_project, voted_project  # noqa: F401  (fixtures)
from tests.factories import make_project, make_user

pytestmark = pytest.mark.django_db

HOSTILE_RATIONALE = "<meta http-equiv=refresh content=0;url=https://evil.example/><img src=x onerror=alert(1)>"
MEDIA = {
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "hf": "application/zip",
}


def researcher_of(project):
    researcher = make_user(role=User.Role.RESEARCHER)
    project.memberships.create(user=researcher, role="researcher")
    return researcher


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def disposition_name(response) -> str:
    match = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', response["Content-Disposition"])
    assert match, response["Content-Disposition"]
    return match.group(1)


@pytest.fixture
def hostile_project(tricky_project):
    """The tricky project under a name with quotes, slashes and a newline, and a rationale that is HTML."""
    project, _ = tricky_project
    project.name = 'Q3 "ties"/../\r\nSet-Cookie: x=1 <b>'
    project.save(update_fields=["name"])
    Vote.objects.filter(comparison__project=project).update(rationale=HOSTILE_RATIONALE)
    return project


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv", "hf"])
def test_every_export_format_downloads_as_an_attachment_never_a_page(hostile_project, api, fmt):
    response = api(researcher_of(hostile_project)).get(f"/api/projects/{hostile_project.pk}/export/?format={fmt}")
    assert response.status_code == 200
    assert response["Content-Type"] == MEDIA[fmt]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'"
    snapshot = response["X-Prefloop-Snapshot"]
    extension = "hf.zip" if fmt == "hf" else fmt
    assert disposition_name(response) == f"prefloop-Q3-ties-Set-Cookie-x-1-b-preferences-s{snapshot}.{extension}"
    assert int(snapshot) == Vote.objects.filter(comparison__project=hostile_project).latest("id").id
    assert "\n" not in response["Content-Disposition"] and "Set-Cookie" not in {k for k, _ in response.items()}
    assert len(body(response)) == int(response["Content-Length"])


def test_manifest_and_ties_downloads_are_attachments_of_the_same_snapshot(hostile_project, api):
    client = api(researcher_of(hostile_project))
    base = f"/api/projects/{hostile_project.pk}/export/?format=jsonl"
    pairs = client.get(base)
    body(pairs)  # read to the end, so the client closes it (and the export's temporary folder goes)
    snapshot = pairs["X-Prefloop-Snapshot"]
    ties = client.get(f"{base}&part=ties&max_vote_id={snapshot}")
    manifest = client.get(f"{base}&part=manifest&max_vote_id={snapshot}")
    assert (ties["Content-Type"], manifest["Content-Type"]) == ("application/x-ndjson", "application/json")
    assert disposition_name(ties).endswith(f"-ties-s{snapshot}.jsonl")
    assert disposition_name(manifest).endswith(f"-preferences-s{snapshot}.jsonl.manifest.json")
    for response in (ties, manifest):
        assert response["Content-Security-Policy"] == "default-src 'none'"
        assert response["X-Content-Type-Options"] == "nosniff"
    tie_rows = [json.loads(line) for line in body(ties).decode().splitlines()]
    assert sorted(r["label"] for r in tie_rows) == ["both_bad", "tie"]
    assert all(r["rationales"] == [HOSTILE_RATIONALE] for r in tie_rows)  # the text survives, as data
    recorded = json.loads(body(manifest))
    assert recorded["sha256"] == pairs["X-Prefloop-SHA256"] and recorded["ties_sha256"] == ties["X-Prefloop-SHA256"]
    assert recorded["rows"] == 2 and recorded["ties_rows"] == 2 and recorded["ties"] == "split"


def test_ties_part_needs_a_split_export(hostile_project, api):
    response = api(researcher_of(hostile_project)).get(
        f"/api/projects/{hostile_project.pk}/export/?ties=label&part=ties"
    )
    assert response.status_code == 400 and "part" in response.json()


def test_download_file_names_keep_only_safe_characters():
    assert safe_name_part("../../etc/passwd", "x") == "etc-passwd"
    assert safe_name_part("日本語", "project-7") == "project-7"
    assert (
        download_filename(".hidden", "preferences", "s3", extension="jsonl") == "prefloop-hidden-preferences-s3.jsonl"
    )
    assert len(download_filename("x" * 500, "y" * 500, extension="parquet")) <= 150


# --- the default export loads into trl as is -----------------------------------------------------


def test_the_default_pairs_file_has_no_null_chosen_and_ties_go_beside_it(tricky_project, tmp_path):
    project, big = tricky_project
    result = export_dataset(project=project, out=tmp_path / "prefs.jsonl")
    rows = read_jsonl(result.path)
    assert sorted(r["label"] for r in rows) == ["a", "b"]
    assert all(isinstance(r["chosen"], str) and isinstance(r["rejected"], str) for r in rows)
    assert result.ties_path == tmp_path / "prefs.ties.jsonl"
    assert sorted(r["label"] for r in read_jsonl(result.ties_path)) == ["both_bad", "tie"]
    manifest = json.loads(result.manifest_path.read_text())
    assert (manifest["ties"], manifest["rows"], manifest["ties_rows"], manifest["ties_file"]) == (
        "split",
        2,
        2,
        "prefs.ties.jsonl",
    )
    assert manifest["stats"]["labels"] == {"a": 1, "b": 1, "tie": 1, "both_bad": 1}


def test_split_and_label_exports_hold_the_same_rows(tricky_project, tmp_path):
    project, _ = tricky_project

    def records(path, fmt) -> list:
        if fmt == "parquet":
            return [json.dumps(row, sort_keys=True) for row in pq.read_table(path).to_pylist()]
        if fmt == "csv":  # records, not lines: quoted cells hold CRLF; the first record is the header
            return [tuple(r) for r in csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline=""))][1:]
        return path.read_bytes().splitlines(keepends=True)

    for fmt in ("jsonl", "parquet", "csv"):
        split = export_dataset(project=project, out=tmp_path / f"s.{fmt}", format=fmt)
        label = export_dataset(
            project=project, out=tmp_path / f"l.{fmt}", format=fmt, options=ExportOptions(ties="label")
        )
        both = records(split.path, fmt) + records(split.ties_path, fmt)
        assert len(both) == 4 and sorted(both) == sorted(records(label.path, fmt))


def test_a_split_export_of_the_same_snapshot_is_byte_identical(tricky_project, tmp_path):
    project, _ = tricky_project
    for fmt in ("jsonl", "parquet"):
        one = export_dataset(project=project, out=tmp_path / f"1.{fmt}", format=fmt)
        bound = ExportFilters(max_vote_id=one.metadata["filters"]["max_vote_id"])
        two = export_dataset(project=project, out=tmp_path / f"2.{fmt}", format=fmt, filters=bound)
        assert one.path.read_bytes() == two.path.read_bytes() and one.sha256 == two.sha256
        assert one.ties_path.read_bytes() == two.ties_path.read_bytes()
        assert one.metadata["ties_sha256"] == two.metadata["ties_sha256"]


def test_ties_label_stays_available_from_the_command(voted_project, tmp_path, capsys):
    project, _, _ = voted_project
    call_command("export_dataset", "--project", project.name, "--out", str(tmp_path / "d.jsonl"))
    default = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in read_jsonl(tmp_path / "d.jsonl")] == ["a"]
    assert default["ties_rows"] == len(read_jsonl(tmp_path / "d.ties.jsonl")) == 2
    call_command("export_dataset", "--project", project.name, "--out", str(tmp_path / "l.jsonl"), "--ties", "label")
    assert json.loads(capsys.readouterr().out)["ties"] == "label"
    labelled = read_jsonl(tmp_path / "l.jsonl")
    assert sorted(r["label"] for r in labelled) == ["a", "tie", "tie"] and not (tmp_path / "l.ties.jsonl").exists()
    assert [r["chosen"] for r in labelled if r["label"] == "tie"] == [None, None]


def test_ties_label_stays_available_over_rest(voted_project, api):
    project, _, _ = voted_project
    client = api(researcher_of(project))
    default = body(client.get(f"/api/projects/{project.pk}/export/")).decode().splitlines()
    labelled = body(client.get(f"/api/projects/{project.pk}/export/?ties=label")).decode().splitlines()
    assert [json.loads(line)["label"] for line in default] == ["a"]
    assert sorted(json.loads(line)["label"] for line in labelled) == ["a", "tie", "tie"]


# --- hf: a zipped datasets folder with a dataset card --------------------------------------------


def test_hf_download_unzips_to_a_folder_that_load_from_disk_opens(tricky_project, api, tmp_path):
    import datasets

    project, big = tricky_project
    response = api(researcher_of(project)).get(f"/api/projects/{project.pk}/export/?format=hf")
    archive = zipfile.ZipFile(io.BytesIO(body(response)))
    roots = {name.split("/")[0] for name in archive.namelist()}
    assert roots == {disposition_name(response).removesuffix(".zip").replace(".", "-")}
    archive.extractall(tmp_path)
    folder = tmp_path / roots.pop()
    data = datasets.load_from_disk(str(folder))
    assert set(data) == {"train", "ties"}
    assert sorted(data["train"]["label"]) == ["a", "b"] and big in data["train"]["chosen"]
    assert sorted(data["ties"]["label"]) == ["both_bad", "tie"]
    manifest = json.loads((folder / "prefloop_export.json").read_text())
    assert manifest["sha256"] == response["X-Prefloop-SHA256"] and manifest["splits"] == {"train": 2, "ties": 2}
    card = (folder / "README.md").read_text()
    assert manifest["sha256"] in card
    for expected in (
        "## Schema",
        "`chosen`",
        "## Filters",
        "max_vote_id",
        "## Counts",
        "| train | 2 |",
        "| ties | 2 |",
        "## Licence of the sources",
        "not recorded",
    ):
        assert expected in card, expected


def test_the_dataset_card_names_the_licences_the_imports_recorded(tmp_path):
    lines = [
        {
            "prompt": f"Q{i}",
            "metadata": {"license": "MIT" if i < 2 else "CC-BY-4.0"},
            "completions": [{"text": "x", "model": "m1"}, {"text": "y", "model": "m2"}],
        }
        for i in range(3)
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    project = make_project()
    import_file(project=project, path=path)
    result = export_dataset(project=project, out=tmp_path / "hf", format="hf")
    card = (result.path / "README.md").read_text()
    assert "| `CC-BY-4.0` | 1 |" in card and "| `MIT` | 2 |" in card and 'license: "other"' in card
    assert "not recorded" not in card


def test_under_asgi_a_download_streams_instead_of_being_read_into_memory(hostile_project):
    """Production serves Django over ASGI (uvicorn): a sync body there is read whole into memory before
    the first byte goes out (Django warns "must consume synchronous iterators"). Downloads stream."""
    import warnings

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=researcher_of(hostile_project))
    client = AsyncClient()

    async def download():
        response = await client.get(
            f"/api/projects/{hostile_project.pk}/export/?format=jsonl", headers={"Authorization": f"Token {token.key}"}
        )
        chunks = [chunk async for chunk in response]  # what Django's ASGI handler does
        response.close()
        return response, b"".join(chunks)

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*consume synchronous iterators")
        response, data = async_to_sync(download)()
    assert response.status_code == 200 and response.is_async
    assert response["Content-Disposition"].startswith("attachment; ") and len(data) == int(response["Content-Length"])
    assert [json.loads(line)["label"] for line in data.decode().splitlines()] in (["a", "b"], ["b", "a"])
