"""The generic_transformations CSV steps: each transform cell by cell, bad contexts, and a CSV
pipeline run end to end (API -> daemon -> all_steps worker) on the local and the S3 backend."""

from __future__ import annotations

import csv
import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import boto3
import pytest
from rest_framework.test import APIClient

from projects.generic_transformations.workers import csv_steps
from shepherd_rpc.artifacts import fetch
from tests.support.pipelines import MotoServer, final, submit
from tests.support.processes import REPO, Processes

ALL_STEPS = REPO / "projects" / "generic_transformations" / "workers" / "all_steps.py"
BUDGET = REPO / "samples" / "budget.csv"
PEOPLE = """id,first,last,email,city
1,Ada,Lovelace,ada@example.org,London
2,Grace,Hopper,GRACE@EXAMPLE.ORG,New York
3,Alan,Turing,,Wilmslow
"""


def run(step: str, context: dict, text: str, tmp_path: Path) -> list[list[str]]:
    src, dst = tmp_path / "in.csv", tmp_path / f"out-{step}.csv"
    src.write_text(text, encoding="utf-8")
    csv_steps.TRANSFORMS[step](src, dst, context)
    return list(csv.reader(io.StringIO(dst.read_text(encoding="utf-8"))))


def test_skip_column_drops_one_or_several_columns(tmp_path) -> None:
    assert run("skip_column", {"columns": "email"}, PEOPLE, tmp_path) == [
        ["id", "first", "last", "city"], ["1", "Ada", "Lovelace", "London"],
        ["2", "Grace", "Hopper", "New York"], ["3", "Alan", "Turing", "Wilmslow"]]
    assert run("skip_column", {"columns": ["first", "city", "id"]}, PEOPLE, tmp_path) == [
        ["last", "email"], ["Lovelace", "ada@example.org"], ["Hopper", "GRACE@EXAMPLE.ORG"], ["Turing", ""]]


def test_merge_columns_appends_the_joined_column_and_drops_the_sources_on_request(tmp_path) -> None:
    context = {"columns": ["first", "last"], "output_column": "name", "separator": " "}
    assert run("merge_columns", {**context, "drop_flag": "True"}, PEOPLE, tmp_path) == [
        ["id", "email", "city", "name"], ["1", "ada@example.org", "London", "Ada Lovelace"],
        ["2", "GRACE@EXAMPLE.ORG", "New York", "Grace Hopper"], ["3", "", "Wilmslow", "Alan Turing"]]
    kept = run("merge_columns", {**context, "separator": "|", "drop_flag": False}, PEOPLE, tmp_path)
    assert kept[0] == ["id", "first", "last", "email", "city", "name"]
    assert [row[-1] for row in kept[1:]] == ["Ada|Lovelace", "Grace|Hopper", "Alan|Turing"]


def test_anonymize_replaces_case_insensitive_matches_in_one_column_only(tmp_path) -> None:
    rows = run("anonymize", {"to_replace": r"@example\.org$", "replace_val": "@***", "column": "email"},
               PEOPLE, tmp_path)
    assert [row[3] for row in rows] == ["email", "ada@***", "GRACE@***", ""]
    assert [row[:3] + row[4:] for row in rows[1:]] == [
        ["1", "Ada", "Lovelace", "London"], ["2", "Grace", "Hopper", "New York"],
        ["3", "Alan", "Turing", "Wilmslow"]]
    literal = run("anonymize", {"to_replace": "a(d)a", "replace_val": r"\1", "column": "first"},
                  PEOPLE, tmp_path)
    assert [row[1] for row in literal[1:]] == [r"\1", "Grace", "Alan"]


def test_rename_column_renames_only_the_named_columns(tmp_path) -> None:
    rows = run("rename_column", {"rename_dict": {"first": "given", "city": "town"}}, PEOPLE, tmp_path)
    assert rows[0] == ["id", "given", "last", "email", "town"]
    assert rows[1:] == list(csv.reader(io.StringIO(PEOPLE)))[1:]


def test_split_column_pads_short_cells_and_keeps_the_rest_in_the_last_column(tmp_path) -> None:
    text = "id,ward,x\n1,Ward 1 - North,a\n2,Ward 9,b\n3,A - B - C,c\n"
    assert run("split_column", {"column": "ward", "new_cols": ["ward_name", "zone"], "sep": " - "},
               text, tmp_path) == [
        ["id", "ward_name", "zone", "x"], ["1", "Ward 1", "North", "a"], ["2", "Ward 9", "", "b"],
        ["3", "A", "B - C", "c"]]


def test_aggregate_pivots_with_exact_sums_and_blank_for_missing_combinations(tmp_path) -> None:
    text = ("dept,year,spent,staff\nRoads,2023,1.10,3\nRoads,2023,2.20,\nRoads,2024,5,1\n"
            "Parks,2024,0.5,2\n")
    assert run("aggregate", {"index": "dept", "columns": "year", "values": "spent"}, text, tmp_path) == [
        ["dept", "2023", "2024"], ["Parks", "", "0.5"], ["Roads", "3.30", "5"]]
    assert run("aggregate", {"index": ["dept"], "columns": "year", "values": "spent, staff"},
               text, tmp_path) == [
        ["dept", "spent_2023", "spent_2024", "staff_2023", "staff_2024"],
        ["Parks", "", "0.5", "", "2"], ["Roads", "3.30", "5", "3", "1"]]


def test_change_format_writes_json_objects_and_xml_rows(tmp_path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("id,full name\n1,Ada & co\n2,<b>\n")

    csv_steps.change_format(src, tmp_path / "out.json", {"format": "json"})
    csv_steps.change_format(src, tmp_path / "out.xml", {"format": "XML"})

    assert json.loads((tmp_path / "out.json").read_text()) == [
        {"id": "1", "full name": "Ada & co"}, {"id": "2", "full name": "<b>"}]
    assert (tmp_path / "out.xml").read_text().splitlines()[1:] == [
        '<rows columns="id,full name">',
        "  <row><id>1</id><full_name>Ada &amp; co</full_name></row>",
        "  <row><id>2</id><full_name>&lt;b&gt;</full_name></row>",
        "</rows>"]


@pytest.mark.parametrize(("step", "context", "message"), [
    ("skip_column", {"columns": ["email", "phone"]},
     "columns: column 'phone' is not in the input; available columns: id, first, last, email, city"),
    ("merge_columns", {"columns": ["first", "middle"], "output_column": "n", "separator": " "},
     "columns: column 'middle' is not in the input; available columns: id, first, last, email, city"),
    ("merge_columns", {"columns": ["first"], "output_column": "city", "separator": " "},
     "output_column: city would duplicate a column"),
    ("merge_columns", {"columns": ["first"], "output_column": "n", "separator": " ", "drop_flag": "maybe"},
     "drop_flag: expected true/false"),
    ("anonymize", {"to_replace": "(", "replace_val": "x", "column": "email"},
     "to_replace: '(' is not a valid pattern"),
    ("anonymize", {"to_replace": "a", "replace_val": "x", "column": "Email"},
     "column: column 'Email' is not in the input; available columns: id, first, last, email, city"),
    ("rename_column", {"rename_dict": {"town": "city2"}}, "rename_dict: column 'town' is not in the input"),
    ("rename_column", {"rename_dict": {"first": "last"}}, "the result has duplicate columns"),
    ("split_column", {"column": "email", "new_cols": ["user", "domain"], "sep": ""},
     "sep: expected a non-empty separator, got ''"),
    ("split_column", {"column": "mail", "new_cols": ["user", "domain"], "sep": "@"},
     "column: column 'mail' is not in the input"),
    ("aggregate", {"index": "city", "columns": "id", "values": "first"},
     "values: line 2: 'Ada' in column 'first' is not a number"),
    ("aggregate", {"index": "town", "columns": "id", "values": "id"}, "index: column 'town' is not in"),
    ("change_format", {"format": "yaml"}, "format: expected 'json' or 'xml', got 'yaml'"),
])
def test_a_bad_context_fails_with_a_message_naming_the_problem(step, context, message, tmp_path) -> None:
    with pytest.raises(csv_steps.TransformError) as caught:
        run(step, context, PEOPLE, tmp_path)
    assert isinstance(caught.value, ValueError)
    assert message in str(caught.value)


def test_an_empty_input_or_a_ragged_row_fails_clearly(tmp_path) -> None:
    with pytest.raises(csv_steps.TransformError, match="the input is empty"):
        run("skip_column", {"columns": "a"}, "", tmp_path)
    with pytest.raises(csv_steps.TransformError, match="line 3: 3 fields but the header has 2"):
        run("skip_column", {"columns": "a"}, "a,b\n1,2\n1,2,3\n", tmp_path)


def test_the_worker_serves_every_step_as_a_file_step(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHEPHERD_ARTIFACT_DIR", str(tmp_path / "store"))
    monkeypatch.delenv("SHEPHERD_ARTIFACT_BACKEND", raising=False)
    worker = csv_steps.make_worker()

    out = worker.handle_in_process("change_format", {"format": "json"}, BUDGET.as_uri())

    assert worker.queues == sorted(csv_steps.TRANSFORMS)
    assert out["name"] == "budget.json" and len(json.loads(fetch(out["url"]).read_text())) == 45


# -- end to end --------------------------------------------------------------------------------------


def expected_outputs() -> list[list[list[str]]]:
    """What the sample pipeline must produce, computed here without the transforms."""
    rows = list(csv.reader(BUDGET.open()))
    skipped = [r[:5] for r in rows]
    renamed = [["year", "department", "ward", "allocated_inr", "spent"]] + skipped[1:]
    totals: dict[tuple[str, str], Decimal] = {}
    for year, dept, _, _, spent in skipped[1:]:
        totals[dept, year] = totals.get((dept, year), Decimal(0)) + Decimal(spent)
    years = sorted({y for _, y in totals})
    pivot = [["department", *years]] + [[d, *(str(totals[d, y]) for y in years)]
                                        for d in sorted({d for d, _ in totals})]
    return [skipped, renamed, pivot]


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


def sample_body(data_url: str) -> dict:
    body = json.loads((REPO / "samples" / "csv_pipeline.json").read_text())
    return {**body, "data_url": data_url}


def run_sample(api: APIClient, procs: Processes, data_url: str, **env: str) -> dict:
    procs.start("all-steps", [sys.executable, str(ALL_STEPS), "--concurrency", "2"], **env)
    procs.daemon(**env)
    pipeline = final(api, submit(api, sample_body(data_url)), procs)
    assert pipeline["status"] == "succeeded", pipeline
    return pipeline


def read_csv(url: str, tmp_path: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(fetch(url, into=tmp_path).read_text())))


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_sample_csv_pipeline_runs_end_to_end_on_the_local_backend(api, procs, tmp_path) -> None:
    store = tmp_path / "artifacts"
    pipeline = run_sample(api, procs, BUDGET.as_uri(), SHEPHERD_ARTIFACT_DIR=str(store))

    outputs = [s["output"] for s in pipeline["steps"]]
    prefix = (store / "pipelines" / str(pipeline["id"])).resolve().as_uri()
    assert all(o["url"].startswith(prefix) and o["name"] == "budget.csv" for o in outputs), outputs
    assert [read_csv(o["url"], tmp_path) for o in outputs] == expected_outputs()
    assert pipeline["output"] == outputs[-1]
    assert read_csv(outputs[-1]["url"], tmp_path)[4] == ["Roads", "6072000", "5769000", "6848000"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_the_sample_csv_pipeline_runs_end_to_end_on_s3(api, procs, moto, monkeypatch, tmp_path) -> None:
    bucket = moto.new_bucket()
    env = moto.env(bucket, SHEPHERD_ARTIFACT_BACKEND="s3", SHEPHERD_S3_PREFIX="runs")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3", endpoint_url=moto.url).upload_file(str(BUDGET), bucket, "incoming/budget.csv")

    pipeline = run_sample(api, procs, f"s3://{bucket}/incoming/budget.csv", **env)

    outputs = [s["output"] for s in pipeline["steps"]]
    assert all(o["url"].startswith(f"s3://{bucket}/runs/pipelines/{pipeline['id']}/steps/") for o in outputs)
    assert [read_csv(o["url"], tmp_path) for o in outputs] == expected_outputs()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_bad_context_fails_the_pipeline_with_the_workers_message(api, procs, tmp_path) -> None:
    procs.start("all-steps", [sys.executable, str(ALL_STEPS)], SHEPHERD_ARTIFACT_DIR=str(tmp_path / "a"))
    procs.daemon()
    body = {"pipeline_name": "bad", "project": "generic_transformations", "data_url": BUDGET.as_uri(),
            "transformers_list": [{"name": "skip_column", "order_no": 1, "context": {"columns": "salary"},
                                   "retries": 0}]}

    pipeline = final(api, submit(api, body), procs)

    assert pipeline["status"] == "failed"
    assert pipeline["steps"][0]["error"]["type"] == "UnknownColumn"
    assert pipeline["error"]["message"] == (
        "columns: column 'salary' is not in the input; available columns: year, department, ward, "
        "allocated_inr, spent_inr, officer_email")
