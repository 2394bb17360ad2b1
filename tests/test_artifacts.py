"""The artifact store (local directory and S3 on a real moto server) and how workers resolve references."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from django.core.management import CommandError, call_command

from pipeline.models import Pipeline
from shepherd_rpc import RpcClient, StepFailed, Worker
from shepherd_rpc.artifacts import (
    ArtifactError,
    LocalStore,
    S3Store,
    fetch,
    load_artifact_settings,
    output_path,
    store_from_settings,
)
from shepherd_rpc.errors import ConfigurationError
from tests.support.pipelines import MotoServer
from tests.support.processes import REPO

ARTIFACT_ENV = ("SHEPHERD_ARTIFACT_BACKEND", "SHEPHERD_ARTIFACT_DIR", "SHEPHERD_S3_BUCKET",
                "SHEPHERD_S3_PREFIX", "SHEPHERD_S3_ENDPOINT_URL", "SHEPHERD_S3_REGION",
                "SHEPHERD_INLINE_MAX_BYTES")


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def local_env(monkeypatch, tmp_path) -> Path:
    """The local backend, rooted in this test's temp dir."""
    for name in ARTIFACT_ENV:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "artifacts"
    monkeypatch.setenv("SHEPHERD_ARTIFACT_DIR", str(root))
    return root


@pytest.fixture
def s3_env(monkeypatch, moto) -> str:
    """The s3 backend on a fresh bucket of the moto server; returns the bucket name."""
    for name in ARTIFACT_ENV:
        monkeypatch.delenv(name, raising=False)
    bucket = moto.new_bucket()
    for name, value in moto.env(bucket, SHEPHERD_ARTIFACT_BACKEND="s3", SHEPHERD_S3_PREFIX="shep").items():
        monkeypatch.setenv(name, value)
    return bucket


def s3_keys(moto: MotoServer, bucket: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- settings --------------------------------------------------------------------------------------


def test_settings_default_to_the_local_backend_and_reject_bad_values() -> None:
    settings = load_artifact_settings({"SHEPHERD_VAR_DIR": "/srv/shepherd"})
    assert settings.backend == "local" and settings.local_dir == Path("/srv/shepherd/artifacts")
    assert settings.inline_max_bytes == 256 * 1024

    with pytest.raises(ConfigurationError, match="invalid SHEPHERD_ARTIFACT_BACKEND 'ftp'"):
        load_artifact_settings({"SHEPHERD_ARTIFACT_BACKEND": "ftp"})
    with pytest.raises(ConfigurationError, match="needs SHEPHERD_S3_BUCKET"):
        load_artifact_settings({"SHEPHERD_ARTIFACT_BACKEND": "s3"})
    with pytest.raises(ConfigurationError, match="SHEPHERD_INLINE_MAX_BYTES"):
        load_artifact_settings({"SHEPHERD_INLINE_MAX_BYTES": "lots"})


def test_importing_the_artifact_module_and_worker_does_not_import_boto3_or_django() -> None:
    check = ("import shepherd_rpc.artifacts, shepherd_rpc.worker, sys; "
             "assert not {m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'django'}")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


# -- the local backend -----------------------------------------------------------------------------


def test_local_store_puts_fetches_deletes_by_prefix_and_prunes_by_age(tmp_path) -> None:
    store = LocalStore(tmp_path / "store")
    source = write(tmp_path / "in.csv", "a,b\n1,2\n")

    url_a = store.put_file(source, name="pipelines/1/steps/1/c1/in.csv")
    url_b = store.put_file(source, name="pipelines/12/steps/3/c2/in.csv")

    assert url_a == (tmp_path / "store/pipelines/1/steps/1/c1/in.csv").resolve().as_uri()
    assert fetch(url_a).read_text() == "a,b\n1,2\n" and source.exists()
    assert store.delete("pipelines/1/") == [url_a]
    assert not (tmp_path / "store/pipelines/1").exists()
    with pytest.raises(ArtifactError, match="does not exist"):
        fetch(url_a)

    # Given one artifact ten days old and one fresh
    url_c = store.put_file(source, name="pipelines/3/steps/4/c3/in.csv")
    old = time.time() - 10 * 86400
    os.utime(fetch(url_b), (old, old))
    # When pruning at 7 days, dry run first
    assert store.prune(7, dry_run=True) == [url_b] and fetch(url_b)
    assert store.prune(7) == [url_b]
    # Then only the fresh one is left, and the emptied folders are gone
    assert fetch(url_c).exists() and not (tmp_path / "store/pipelines/12").exists()


def test_names_that_escape_the_store_are_refused(tmp_path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(ArtifactError, match="without '..'"):
        store.put_file(write(tmp_path / "x", "x"), name="../outside")
    with pytest.raises(ArtifactError, match="without '..'"):
        store.delete("")


def test_fetch_downloads_http_urls_and_rejects_unknown_schemes(tmp_path) -> None:
    write(tmp_path / "site" / "data.csv", "x\n1\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data.csv"
        local = fetch(url, into=tmp_path)
        assert local.name == "data.csv" and local.read_text() == "x\n1\n"
        with pytest.raises(ArtifactError, match="could not download .*missing.csv.*404"):
            fetch(url.replace("data", "missing"), into=tmp_path)
    finally:
        server.shutdown()
    with pytest.raises(ArtifactError, match="use a file://, s3://, http:// or https:// URL"):
        fetch("ftp://example.org/a.csv")


# -- the S3 backend (moto server) ------------------------------------------------------------------


def test_s3_store_puts_fetches_deletes_by_prefix_and_prunes(s3_env, moto, tmp_path) -> None:
    store = store_from_settings()
    assert isinstance(store, S3Store)
    source = write(tmp_path / "in.csv", "a,b\n1,2\n")

    url_a = store.put_file(source, name="pipelines/1/steps/1/c1/in.csv")
    url_b = store.put_file(source, name="pipelines/12/steps/3/c2/in.csv")

    assert url_a == f"s3://{s3_env}/shep/pipelines/1/steps/1/c1/in.csv"
    assert fetch(url_a, into=tmp_path).read_text() == "a,b\n1,2\n"
    assert store.delete("pipelines/1/") == [url_a]
    assert s3_keys(moto, s3_env) == ["shep/pipelines/12/steps/3/c2/in.csv"]
    with pytest.raises(ArtifactError, match="could not download"):
        fetch(url_a, into=tmp_path)

    # S3 sets LastModified itself: nothing is a day old, everything is older than "now"
    assert store.prune(1) == []
    time.sleep(1.1)  # LastModified has one-second resolution
    assert store.prune(0, dry_run=True) == [url_b] and s3_keys(moto, s3_env)
    assert store.prune(0) == [url_b] and s3_keys(moto, s3_env) == []


# -- the worker side: files=True and oversize outputs ------------------------------------------------


def upper_worker() -> Worker:
    worker = Worker(name="upper")

    @worker.step("upper", files=True)
    def upper(context: dict, path: Path) -> Path:
        assert isinstance(path, Path)
        out = output_path(path.name)
        out.write_text(path.read_text().upper() + context.get("suffix", ""))
        return out

    return worker


def test_a_file_step_gets_a_local_path_and_its_output_becomes_a_local_reference(local_env, tmp_path) -> None:
    source = write(tmp_path / "names.txt", "ada\ngrace\n")
    worker = upper_worker()

    first = worker.handle_in_process("upper", {}, source.as_uri())
    second = worker.handle_in_process("upper", {"suffix": "!"}, first)

    assert first["name"] == "names.txt" and first["size"] == len("ADA\nGRACE\n")
    assert first["url"].startswith((local_env / "pipelines" / "local" / "steps" / "upper").resolve().as_uri())
    assert fetch(second["url"]).read_text() == "ADA\nGRACE\n!"
    assert source.read_text() == "ada\ngrace\n"


def test_a_file_step_reads_and_writes_s3_without_knowing_it(s3_env, moto, tmp_path) -> None:
    client = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    client.put_object(Bucket=s3_env, Key="incoming/names.txt", Body=b"ada\n")

    output = upper_worker().handle_in_process("upper", {}, {"url": f"s3://{s3_env}/incoming/names.txt"})

    assert output["url"].startswith(f"s3://{s3_env}/shep/pipelines/local/steps/upper/")
    key = output["url"].removeprefix(f"s3://{s3_env}/")
    assert client.get_object(Bucket=s3_env, Key=key)["Body"].read() == b"ADA\n"


def test_a_file_step_without_a_file_input_fails_with_a_clear_error(local_env) -> None:
    with pytest.raises(ArtifactError, match="step 'upper' takes a file: its input must be a URL"):
        upper_worker().handle_in_process("upper", {}, None)


def test_an_oversize_json_output_is_stored_and_loaded_back_for_the_next_step(local_env, monkeypatch) -> None:
    monkeypatch.setenv("SHEPHERD_INLINE_MAX_BYTES", "1000")
    worker = Worker(name="json")
    worker.step("make")(lambda context, input: list(range(context["n"])))
    worker.step("total")(lambda context, input: sum(input))

    small = worker.handle_in_process("make", {"n": 10}, None)
    big = worker.handle_in_process("make", {"n": 1000}, None)

    assert small == list(range(10))
    assert big["format"] == "json" and big["name"] == "output.json" and big["size"] > 1000
    assert json.loads(fetch(big["url"]).read_text()) == list(range(1000))
    assert worker.handle_in_process("total", {}, big) == sum(range(1000))


def test_a_file_step_over_the_real_broker_stores_its_output_under_the_pipeline(local_env, tmp_path) -> None:
    prefix = f"test-artifacts-{uuid.uuid4().hex[:8]}"
    worker = upper_worker()
    worker.prefix = prefix
    thread = threading.Thread(target=worker.serve, daemon=True)
    thread.start()
    client = RpcClient(prefix=prefix, name="artifacts-test").start()
    try:
        source = write(tmp_path / "names.txt", "lin\n")
        result = client.call("upper", context={}, input=source.as_uri(), timeout=30, wait_limit=30,
                             call_id="call-1", pipeline_id=41, step_id=7)
        with pytest.raises(StepFailed, match="ArtifactError: .*does not exist"):
            client.call("upper", context={}, input=(tmp_path / "gone.txt").as_uri(), timeout=30,
                        wait_limit=30, pipeline_id=41, step_id=8)
    finally:
        client.close()
        worker.stop()
        thread.join(timeout=30)

    expected = (local_env / "pipelines/41/steps/7/call-1/names.txt").resolve()
    assert result.output == {"url": expected.as_uri(), "size": 4, "name": "names.txt"}
    assert expected.read_text() == "LIN\n"


# -- the management commands -----------------------------------------------------------------------


@pytest.mark.django_db
def test_delete_pipeline_removes_the_row_and_only_its_artifacts(local_env, tmp_path) -> None:
    done = Pipeline.objects.create(name="done", project="demo", status=Pipeline.Status.SUCCEEDED)
    other = Pipeline.objects.create(name="other", project="demo", status=Pipeline.Status.SUCCEEDED)
    store, source = store_from_settings(), write(tmp_path / "f.csv", "a\n")
    mine = store.put_file(source, name=f"pipelines/{done.pk}/steps/1/c/f.csv")
    theirs = store.put_file(source, name=f"pipelines/{other.pk}/steps/2/c/f.csv")

    call_command("delete_pipeline", str(done.pk))

    assert not Pipeline.objects.filter(pk=done.pk).exists()
    assert not Path(mine.removeprefix("file://")).exists() and fetch(theirs)
    call_command("delete_pipeline", str(other.pk), "--keep-artifacts")
    assert fetch(theirs) and not Pipeline.objects.filter(pk=other.pk).exists()
    with pytest.raises(CommandError, match=f"no pipeline with id {done.pk}"):
        call_command("delete_pipeline", str(done.pk))


@pytest.mark.django_db
def test_delete_pipeline_refuses_a_running_pipeline() -> None:
    running = Pipeline.objects.create(name="busy", project="demo", status=Pipeline.Status.RUNNING)

    with pytest.raises(CommandError, match=f"pipeline {running.pk} is running; cancel it"):
        call_command("delete_pipeline", str(running.pk))

    assert Pipeline.objects.filter(pk=running.pk).exists()


def test_prune_artifacts_command_deletes_only_old_ones(local_env, tmp_path, capsys) -> None:
    store, source = store_from_settings(), write(tmp_path / "f.csv", "a\n")
    old = store.put_file(source, name="pipelines/1/steps/1/c/f.csv")
    new = store.put_file(source, name="pipelines/2/steps/1/c/f.csv")
    past = time.time() - 3 * 86400
    os.utime(fetch(old), (past, past))

    call_command("prune_artifacts", "--days", "2", "--dry-run")
    assert fetch(old) and "would delete 1 artifact(s)" in capsys.readouterr().out
    call_command("prune_artifacts", "--days", "2")

    assert "deleted 1 artifact(s)" in capsys.readouterr().out
    assert not Path(old.removeprefix("file://")).exists() and fetch(new)
    with pytest.raises(CommandError, match="days must be >= 0"):
        call_command("prune_artifacts", "--days", "-1")


def test_sentinel_upload_to_s3_uploads_its_input_under_the_context_prefix(s3_env, moto, tmp_path) -> None:
    sys.path.insert(0, str(REPO / "projects" / "ids_drr" / "workers"))
    try:
        import sentinel_upload_to_s3 as upload_worker
    finally:
        sys.path.pop(0)
    raster = tmp_path / "flood.tif"
    raster.write_bytes(b"\x00\x01raster")

    output = upload_worker.worker.handle_in_process("sentinel_upload_to_s3", {"prefix": "sentinel/2023"},
                                                    {"url": raster.as_uri(), "size": 8, "name": "flood.tif"})

    assert output == {"url": f"s3://{s3_env}/sentinel/2023/flood.tif", "size": 8, "name": "flood.tif"}
    assert s3_keys(moto, s3_env) == ["sentinel/2023/flood.tif"]
