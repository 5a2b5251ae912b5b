"""The production profile as a real process: environment, `manage.py` runs, uvicorn workers, a raw HTTP client.

Used by tests/prod and `make prod-smoke`. The server talks to the test process's own PostgreSQL
test database (so the test can look at what it stored) and to Redis under a throwaway key prefix.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from prefloop.loopback import free_port, start_process, stop_process_group, uvicorn_command

ROOT = Path(__file__).resolve().parents[2]
PORTS = range(18200, 18300)  # this suite's own range (see the contributors' notes); any free one else


def redis_url() -> str:
    return os.environ.get("PREFLOOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def database_url(settings_dict: dict) -> str:
    user = settings_dict.get("USER") or ""
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    return f"postgres://{auth}{settings_dict.get('HOST') or '127.0.0.1'}:{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}"


def production_env(*, database: str, redis: str, workdir: Path, **extra: str) -> dict[str, str]:
    """What an operator sets (docs/operations.md), with a throwaway secret and key prefixes."""
    run = uuid.uuid4().hex[:12]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "PREFLOOP_", "DATABASE_URL", "REDIS_URL", "CELERY_", "PYTEST_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="prefloop.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=database,
        REDIS_URL=redis,
        PREFLOOP_CACHE_PREFIX=f"prefloop-smoke-{run}",
        PREFLOOP_CHANNELS_PREFIX=f"prefloop-smoke-{run}",
        PREFLOOP_VAR_DIR=str(workdir / "var"),
        DJANGO_STATIC_ROOT=str(workdir / "static"),
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="4",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def manage_async(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass
class Server:
    """uvicorn with N workers: the documented production command, on a free loopback port."""

    env: dict[str, str]
    workers: int = 2
    port: int = 0
    log: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = 30) -> Server:
        self.port = self.port or free_port(PORTS)
        command = uvicorn_command(
            self.port,
            workers=self.workers,
            extra=["--no-server-header", "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1"],
        )
        self.process = start_process(command, env=self.env, log=open(self.log, "wb") if self.log else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"uvicorn exited with {self.process.returncode}: {self.log_text()}")
            try:
                status, _, body = self.request("GET", "/healthz/")
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"uvicorn did not answer /healthz/ within {timeout} s: {self.log_text()}")

    def stop(self) -> None:
        if self.process:
            stop_process_group(self.process)  # the supervisor and its workers

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log and self.log.exists() else ""

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict | None = None,
        body: bytes | str | None = None,
        host: str | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", host or f"127.0.0.1:{self.port}")
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            data = body.encode() if isinstance(body, str) else body
            connection.putheader("Content-Length", str(len(data or b"")))
            connection.endheaders(data)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()


class Browser:
    """Just enough of a browser behind the TLS proxy: cookies (Secure ones too), Referer, X-Forwarded-Proto."""

    def __init__(self, server: Server):
        self.server = server
        self.cookies: dict[str, str] = {}
        self.origin = f"https://127.0.0.1:{server.port}"

    def _headers(self, extra: dict | None = None) -> dict:
        headers = {"X-Forwarded-Proto": "https"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def _remember(self, headers: http.client.HTTPMessage) -> None:
        for cookie in headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]

    def get(self, path: str):
        status, headers, body = self.server.request("GET", path, headers=self._headers())
        self._remember(headers)
        return status, headers, body.decode()

    def post_form(self, path: str, fields: dict[str, str]):
        from urllib.parse import urlencode

        status, headers, body = self.server.request(
            "POST",
            path,
            body=urlencode(fields),
            headers=self._headers(
                {
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Origin": self.origin,
                    "Referer": f"{self.origin}{path}",
                }
            ),
        )
        self._remember(headers)
        return status, headers, body.decode()


def api(
    server: Server,
    method: str,
    path: str,
    *,
    token: str | None = None,
    data=None,
    headers: dict | None = None,
    form: dict | None = None,
    raw: tuple[str, bytes] | None = None,
):
    """A JSON API call as a client behind the proxy would make it: (status, parsed body, headers)."""
    sent = {"X-Forwarded-Proto": "https", "Accept": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Token {token}"
    body = None
    if data is not None:
        sent["Content-Type"] = "application/json"
        body = json.dumps(data)
    elif form is not None:
        from urllib.parse import urlencode

        sent["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(form)
    elif raw is not None:
        sent["Content-Type"], body = raw
    status, response_headers, content = server.request(method, path, headers=sent, body=body)
    try:
        parsed = json.loads(content) if content else None
    except ValueError:
        parsed = content.decode(errors="replace")
    return status, parsed, response_headers


def multipart(
    field_name: str, filename: str, content: bytes, fields: dict[str, str] | None = None
) -> tuple[str, bytes]:
    boundary = f"prefloop-{uuid.uuid4().hex}"
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return f"multipart/form-data; boundary={boundary}", b"".join(parts)
