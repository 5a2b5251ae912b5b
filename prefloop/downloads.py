"""Downloads are files, never pages: one response builder for every file prefloop hands out.

A download answered as `text/html` (or sniffed as such) renders in the researcher's tab: a
rationale holding `<meta http-equiv=refresh content=0;url=...>` navigates away, an injected
`<img onerror>` runs. So each download carries its real media type, `Content-Disposition:
attachment` with a file name made only of `[A-Za-z0-9._-]`, `X-Content-Type-Options: nosniff`
and a Content-Security-Policy of `default-src 'none'` (nothing loads, nothing runs, even if a
browser were to render it). See docs/security.md, "Downloads".
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpResponse, StreamingHttpResponse

MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "zip": "application/zip",
    "json": "application/json",
    "svg": "image/svg+xml",
    "png": "image/png",
}
DOWNLOAD_CSP = "default-src 'none'"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_UNSAFE_PART = re.compile(r"[^A-Za-z0-9_]+")  # parts hold no dots: no "..", no hidden extension
MAX_NAME = 150
CHUNK_BYTES = 1 << 16


def safe_name_part(text: str, fallback: str) -> str:
    """`text` reduced to a file-name part of [A-Za-z0-9_-] (runs of anything else become one "-"), or `fallback`."""
    part = _UNSAFE_PART.sub("-", text).strip("-")[:60].strip("-")
    return part or fallback


def download_filename(*parts: str, extension: str) -> str:
    """'prefloop-<parts…>.<extension>', every part made safe; bounded length."""
    stem = "-".join(safe_name_part(p, "x") for p in ("prefloop", *parts))[: MAX_NAME - len(extension) - 1]
    extension = ".".join(safe_name_part(e, "bin") for e in extension.split("."))
    return f"{stem}.{extension}"


def download_response(
    path: Path,
    *,
    filename: str,
    kind: str,
    request=None,
    remove_after: Path | None = None,
    headers: dict[str, str] | None = None,
) -> StreamingHttpResponse:
    """Stream the file at `path` as an attachment named `filename`, of media type MEDIA_TYPES[kind].

    `remove_after`: a folder deleted once the body has been sent (temporary exports). Under ASGI
    (`request` an ASGIRequest) the body is an async iterator: Django reads a sync one into memory
    whole before an ASGI server sends a byte ("must consume synchronous iterators")."""
    under_asgi = isinstance(getattr(request, "_request", request), ASGIRequest)  # DRF wraps Django's request
    chunks = (_AsyncFileChunks if under_asgi else _FileChunks)(Path(path), remove_after)
    response = StreamingHttpResponse(chunks, content_type=MEDIA_TYPES[kind])
    response["Content-Length"] = str(Path(path).stat().st_size)
    return as_download(response, filename=filename, headers=headers)


def as_download(response, *, filename: str, headers: dict[str, str] | None = None):
    """Mark `response` as a file to save, never a page to render (its media type already set)."""
    if _UNSAFE.search(filename) or filename.startswith("."):
        raise ValueError(f"unsafe download file name {filename!r}")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = DOWNLOAD_CSP
    response["Cache-Control"] = "private, no-store"
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def folder_files(folder: Path) -> list[Path]:
    """Plain files under `folder`, sorted; symbolic links are never followed (they could point anywhere)."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(root, d)))
        found += [Path(root) / f for f in files if not os.path.islink(os.path.join(root, f))]
    return sorted(found)


def zip_folder(folder: Path, zip_path: Path, *, root: str, compress: bool = True) -> Path:
    """`folder` as a zip whose entries sit under `root/` (sorted, fixed timestamps: same files, same bytes)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(zip_path, "w", compression=method, allowZip64=True) as archive:
        for file in folder_files(Path(folder)):
            info = zipfile.ZipInfo(f"{root}/{file.relative_to(folder).as_posix()}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            with open(file, "rb") as source, archive.open(info, "w", force_zip64=True) as target:
                shutil.copyfileobj(source, target, 1 << 20)
    return zip_path


def folder_download(folder: Path, *, filename: str, request=None):
    """A model folder (reward model, policy) as a zip attachment; refused (413) above
    settings.PREFLOOP_MAX_ARTIFACT_DOWNLOAD_BYTES. Weights are stored, not deflated (they do not compress)."""
    folder = Path(folder)
    size = sum(f.stat().st_size for f in folder_files(folder)) if folder.is_dir() else None
    if size is None:
        # The version exists (the caller checked who may see it); its files are gone from disk.
        return HttpResponse("artifact: the model folder is no longer on disk", status=410, content_type="text/plain")
    limit = settings.PREFLOOP_MAX_ARTIFACT_DOWNLOAD_BYTES
    if size > limit:
        return HttpResponse(
            f"artifact: {size} bytes, more than the {limit} a download may hold", status=413, content_type="text/plain"
        )
    work = Path(tempfile.mkdtemp(prefix="prefloop-artifact-"))
    try:
        archive = zip_folder(
            folder, work / "artifact.zip", root=filename.removesuffix(".zip").replace(".", "-"), compress=False
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return download_response(archive, filename=filename, kind="zip", request=request, remove_after=work)


def svg_download(svg: str, *, filename: str):
    """A server-rendered chart as a standalone SVG file (its labels are escaped where it is drawn)."""
    response = HttpResponse('<?xml version="1.0" encoding="UTF-8"?>\n' + svg, content_type=MEDIA_TYPES["svg"])
    return as_download(response, filename=filename)


class _FileChunks:
    """The file's bytes in chunks; closing it (Django does, sent or not) removes the temporary folder."""

    def __init__(self, path: Path, remove_after: Path | None):
        self._handle = open(path, "rb")
        self._remove_after = remove_after

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self._handle.read(CHUNK_BYTES), b"")

    def close(self) -> None:
        self._handle.close()
        if self._remove_after is not None:
            shutil.rmtree(self._remove_after, ignore_errors=True)


class _AsyncFileChunks(_FileChunks):
    """The same chunks for an ASGI server, read off the event loop; no __iter__, so Django streams them."""

    __iter__ = None  # type: ignore[assignment]  # iter() must fail: Django then takes the async path

    async def __aiter__(self):
        while chunk := await asyncio.to_thread(self._handle.read, CHUNK_BYTES):
            yield chunk
