"""Artifacts: files passed between steps by reference, in a local directory or an S3 bucket.

Imports only the standard library; boto3 is imported when the s3 backend or an ``s3://`` URL is
used, so a worker node with only pika installed still runs local-file steps. See docs/artifacts.md.

A reference is ``{"url": "file:///…" | "s3://bucket/key", "size": bytes, "name": "budget.csv"}``.
A JSON output stored because it was too big to travel inline adds ``"format": "json"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .settings import env_int, env_str

logger = logging.getLogger(__name__)

DEFAULT_INLINE_MAX_BYTES = 256 * 1024
BACKENDS = ("local", "s3")
REFERENCE_KEYS = {"url", "size", "name"}
_CHECKOUT = Path(__file__).resolve().parent.parent


class ArtifactError(ValueError):
    """An artifact URL or reference is unusable (bad scheme, missing file, failed download)."""


@dataclass(frozen=True)
class ArtifactSettings:
    backend: str = "local"
    local_dir: Path = Path(tempfile.gettempdir()) / "shepherd-artifacts"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_region: str = ""
    s3_endpoint_url: str = ""
    inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES


def default_local_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$SHEPHERD_VAR_DIR/artifacts, else <checkout>/var/artifacts when run from one, else a temp dir."""
    var_dir = env_str("SHEPHERD_VAR_DIR", "", environ)
    if var_dir:
        return Path(var_dir) / "artifacts"
    if (_CHECKOUT / "manage.py").exists():
        return _CHECKOUT / "var" / "artifacts"
    return Path(tempfile.gettempdir()) / "shepherd-artifacts"


def load_artifact_settings(environ: Mapping[str, str] | None = None) -> ArtifactSettings:
    """Read the SHEPHERD_ARTIFACT_* / SHEPHERD_S3_* knobs; raise ConfigurationError on a bad one."""
    backend = env_str("SHEPHERD_ARTIFACT_BACKEND", "local", environ).strip().lower()
    if backend not in BACKENDS:
        raise ConfigurationError(f"invalid SHEPHERD_ARTIFACT_BACKEND {backend!r}; use one of {BACKENDS}")
    settings = ArtifactSettings(
        backend=backend,
        local_dir=Path(env_str("SHEPHERD_ARTIFACT_DIR", str(default_local_dir(environ)), environ)),
        s3_bucket=env_str("SHEPHERD_S3_BUCKET", "", environ),
        s3_prefix=env_str("SHEPHERD_S3_PREFIX", "", environ).strip("/"),
        s3_region=env_str("SHEPHERD_S3_REGION", "", environ),
        s3_endpoint_url=env_str("SHEPHERD_S3_ENDPOINT_URL", "", environ),
        inline_max_bytes=env_int("SHEPHERD_INLINE_MAX_BYTES", DEFAULT_INLINE_MAX_BYTES, environ, minimum=0),
    )
    if backend == "s3" and not settings.s3_bucket:
        raise ConfigurationError("SHEPHERD_ARTIFACT_BACKEND=s3 needs SHEPHERD_S3_BUCKET (the bucket name)")
    return settings


def _safe_name(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ArtifactError(f"artifact name {name!r} must be a relative key without '..'")
    return "/".join(parts)


class ArtifactStore(ABC):
    """Where step outputs live. Names are relative keys such as ``pipelines/7/steps/12/<call>/out.csv``."""

    @abstractmethod
    def put_file(self, path: Path | str, *, name: str, move: bool = False) -> str:
        """Store the file at ``path`` under ``name`` and return its URL (``move`` may consume it)."""

    @abstractmethod
    def delete(self, prefix: str) -> list[str]:
        """Delete every artifact whose name starts with ``prefix``; return their URLs."""

    @abstractmethod
    def prune(self, older_than_days: float, *, dry_run: bool = False) -> list[str]:
        """Delete (or with ``dry_run`` only list) artifacts last written more than N days ago."""

    def put_bytes(self, data: bytes, *, name: str) -> str:
        with tempfile.TemporaryDirectory(prefix="shepherd-put-") as tmp:
            path = Path(tmp) / "data"
            path.write_bytes(data)
            return self.put_file(path, name=name, move=True)

    def fetch(self, url: str, *, into: Path | None = None) -> Path:
        """A local path holding the artifact at ``url`` (any supported scheme, not only this store's)."""
        return fetch(url, into=into)


class LocalStore(ArtifactStore):
    """Artifacts as files under ``root``; URLs are ``file:///abs/path``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def put_file(self, path: Path | str, *, name: str, move: bool = False) -> str:
        target = self.root / _safe_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.move if move else shutil.copyfile)(str(path), str(target))
        return target.as_uri()

    def delete(self, prefix: str) -> list[str]:
        base = self.root / _safe_name(prefix)
        if base.is_file():
            base.unlink()
            return [base.as_uri()]
        urls = [p.as_uri() for p in sorted(base.rglob("*")) if p.is_file()] if base.is_dir() else []
        shutil.rmtree(base, ignore_errors=True)
        return urls

    def prune(self, older_than_days: float, *, dry_run: bool = False) -> list[str]:
        cutoff = time.time() - older_than_days * 86400
        old = [p for p in sorted(self.root.rglob("*")) if p.is_file() and p.stat().st_mtime < cutoff]
        if not dry_run:
            for path in old:
                path.unlink(missing_ok=True)
            for folder in sorted((d for d in self.root.rglob("*") if d.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only succeeds when empty
        return [p.as_uri() for p in old]


class S3Store(ArtifactStore):
    """Artifacts as objects in ``bucket`` under ``prefix``; URLs are ``s3://bucket/key``."""

    def __init__(self, bucket: str, *, prefix: str = "", region: str = "", endpoint_url: str = "") -> None:
        if not bucket:
            raise ConfigurationError("the s3 artifact store needs a bucket (SHEPHERD_S3_BUCKET)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = s3_client(region=region, endpoint_url=endpoint_url)

    def key(self, name: str) -> str:
        return f"{self.prefix}/{_safe_name(name)}" if self.prefix else _safe_name(name)

    def put_file(self, path: Path | str, *, name: str, move: bool = False) -> str:
        key = self.key(name)
        self.client.upload_file(str(path), self.bucket, key)
        if move:
            Path(path).unlink(missing_ok=True)
        return f"s3://{self.bucket}/{key}"

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def delete(self, prefix: str) -> list[str]:
        # keep a trailing "/" so that "pipelines/1/" does not also match "pipelines/12/"
        keys = [o["Key"] for o in self._objects(self.key(prefix) + ("/" if prefix.endswith("/") else ""))]
        self._delete_keys(keys)
        return [f"s3://{self.bucket}/{k}" for k in keys]

    def prune(self, older_than_days: float, *, dry_run: bool = False) -> list[str]:
        cutoff = time.time() - older_than_days * 86400
        root = f"{self.prefix}/" if self.prefix else ""
        keys = [o["Key"] for o in self._objects(root) if o["LastModified"].timestamp() < cutoff]
        if not dry_run:
            self._delete_keys(keys)
        return [f"s3://{self.bucket}/{k}" for k in keys]


def s3_client(*, region: str = "", endpoint_url: str = "") -> Any:
    """A boto3 S3 client (credentials from boto3's usual chain). Imports boto3 only now."""
    settings = load_artifact_settings()
    try:
        import boto3
    except ImportError as exc:
        raise ConfigurationError("s3 artifacts need boto3: pip install 'shepherd-rpc[s3]'") from exc
    return boto3.client("s3", region_name=region or settings.s3_region or None,
                        endpoint_url=endpoint_url or settings.s3_endpoint_url or None)


def store_from_settings(settings: ArtifactSettings | None = None) -> ArtifactStore:
    """The store the SHEPHERD_ARTIFACT_* environment selects."""
    settings = settings or load_artifact_settings()
    if settings.backend == "s3":
        return S3Store(settings.s3_bucket, prefix=settings.s3_prefix, region=settings.s3_region,
                       endpoint_url=settings.s3_endpoint_url)
    return LocalStore(settings.local_dir)


def fetch(url: str, *, into: Path | None = None) -> Path:
    """A local path for ``url``: file:// (or a plain path) maps to the file; s3:// and http(s):// are
    downloaded into ``into`` (a directory; a new temp dir if None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("", "file"):
        path = Path(urllib.parse.unquote(parts.path) if parts.scheme else url)
        if not path.is_file():
            raise ArtifactError(f"artifact {url!r} does not exist (looked for {path})")
        return path
    if parts.scheme not in ("s3", "http", "https"):
        raise ArtifactError(f"cannot fetch {url!r}: use a file://, s3://, http:// or https:// URL")
    name = Path(urllib.parse.unquote(parts.path)).name or "download"
    folder = Path(tempfile.mkdtemp(prefix="shepherd-fetch-", dir=into))
    target = folder / name
    try:
        if parts.scheme == "s3":
            s3_client().download_file(parts.netloc, parts.path.lstrip("/"), str(target))
        else:
            with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1024 * 1024)
    except Exception as exc:  # boto3 / urllib errors differ; all become one clear error
        raise ArtifactError(f"could not download {url!r}: {type(exc).__name__}: {exc}") from exc
    return target


# -- worker side: what @worker.step(files=True) does around a handler ---------------------------------


@dataclass(frozen=True)
class _Call:
    pipeline_id: Any
    step_id: Any
    call_id: str
    scratch: Path


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("shepherd_call", default=None)


@contextlib.contextmanager
def bind_call(pipeline_id: Any, step_id: Any, call_id: str) -> Iterator[None]:
    """Within the block, stored outputs are keyed by this call and scratch files live in one temp dir."""
    scratch = Path(tempfile.mkdtemp(prefix="shepherd-step-"))
    token = _current.set(_Call(pipeline_id, step_id, call_id, scratch))
    try:
        yield
    finally:
        _current.reset(token)
        shutil.rmtree(scratch, ignore_errors=True)


def output_path(name: str) -> Path:
    """Where a handler should write an output file called ``name`` (moved, not copied, when stored)."""
    call = _current.get()
    folder = (call.scratch if call else Path(tempfile.mkdtemp(prefix="shepherd-out-"))) / "out"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / Path(name).name


def call_prefix(pipeline_id: Any, step_id: Any, call_id: str) -> str:
    """The key prefix of one call's outputs; ``pipelines/<id>/`` holds all of a pipeline's."""
    return f"pipelines/{pipeline_id if pipeline_id is not None else 'none'}/steps/{step_id}/{call_id}"


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and REFERENCE_KEYS <= value.keys() and isinstance(value["url"], str)


def input_url(step: str, value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value["url"]
    raise ArtifactError(f"step {step!r} takes a file: its input must be a URL string or "
                        f"{{\"url\": ...}}, got {type(value).__name__} {str(value)[:80]!r}")


def wrap_handler(step: str, handler: Callable[[dict[str, Any], Any], Any], *, files: bool
                 ) -> Callable[[dict[str, Any], Any], Any]:
    """The handler the worker calls: resolves references for it and stores what it returns."""

    def run(context: dict[str, Any], input: Any) -> Any:
        call = _current.get()
        if call is None:  # handle_in_process outside a broker call
            with bind_call("local", step, uuid.uuid4().hex):
                return run(context, input)
        if files:
            source = fetch(input_url(step, input), into=call.scratch)
            return _store_output(handler(context, source), call, files=True)
        if is_reference(input) and input.get("format") == "json":
            input = json.loads(fetch(input["url"], into=call.scratch).read_bytes())
        return _store_output(handler(context, input), call, files=False)

    run.__wrapped__ = handler  # type: ignore[attr-defined]
    return run


def _store_output(output: Any, call: _Call, *, files: bool) -> Any:
    """A returned path (or, for file steps, a str) is stored; JSON goes inline unless oversize."""
    prefix = call_prefix(call.pipeline_id, call.step_id, call.call_id)
    if isinstance(output, os.PathLike) or (files and isinstance(output, str)):
        path = Path(output)
        if not path.is_file():
            raise ArtifactError(f"the handler returned {str(path)!r}, which is not a file")
        size, inside = path.stat().st_size, call.scratch.resolve() in path.resolve().parents
        url = store_from_settings().put_file(path, name=f"{prefix}/{path.name}", move=inside)
        return {"url": url, "size": size, "name": path.name}
    settings = load_artifact_settings()
    try:
        data = json.dumps(output, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return output  # not JSON: the reply encoder reports it
    if len(data) <= settings.inline_max_bytes:
        return output
    url = store_from_settings(settings).put_bytes(data, name=f"{prefix}/output.json")
    logger.info("output of %d bytes is over SHEPHERD_INLINE_MAX_BYTES=%d; stored as %s", len(data),
                settings.inline_max_bytes, url)
    return {"url": url, "size": len(data), "name": "output.json", "format": "json"}

