"""Worker for ids_drr's sentinel_upload_to_s3: `python projects/ids_drr/workers/sentinel_upload_to_s3.py`.

Uploads the previous step's file (a reference or URL, or a list of them) to SHEPHERD_S3_BUCKET under
the context's "prefix" (default SHEPHERD_S3_PREFIX) and returns the object reference(s)
``{"url": "s3://bucket/key", "size": ..., "name": ...}``. The endpoint, region and credentials come
from the same settings as the S3 artifact store (docs/artifacts.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from shepherd_rpc import ConfigurationError, Worker
from shepherd_rpc.artifacts import S3Store, fetch, input_url, load_artifact_settings

worker = Worker(name="sentinel_upload_to_s3")


def upload(context: dict[str, Any], input: Any) -> dict[str, Any] | list[dict[str, Any]]:
    settings = load_artifact_settings()
    if not settings.s3_bucket:
        raise ConfigurationError("sentinel_upload_to_s3 needs SHEPHERD_S3_BUCKET (the target bucket)")
    prefix = context.get("prefix")
    store = S3Store(settings.s3_bucket, prefix=settings.s3_prefix if prefix is None else str(prefix),
                    region=settings.s3_region, endpoint_url=settings.s3_endpoint_url)
    items = input if isinstance(input, list) else [input]
    with tempfile.TemporaryDirectory(prefix="shepherd-upload-") as tmp:
        uploaded = [_upload_one(store, input_url("sentinel_upload_to_s3", item), Path(tmp)) for item in items]
    return uploaded if isinstance(input, list) else uploaded[0]


def _upload_one(store: S3Store, url: str, tmp: Path) -> dict[str, Any]:
    path = fetch(url, into=tmp)
    return {"url": store.put_file(path, name=path.name), "size": path.stat().st_size, "name": path.name}


worker.step("sentinel_upload_to_s3")(upload)

if __name__ == "__main__":
    worker.run()
