"""From add_project to a registered step: scaffolding into a throwaway projects package.

Nothing here writes into the repository's ``projects/``: each test gets its own package on
``sys.path`` and points ``registry.PROJECTS_PACKAGE`` at it.
"""

from __future__ import annotations

import ast
import io
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from code_templates.listing import describe_projects, format_projects
from code_templates.new_project import add_project
from code_templates.publisher_template import main as publisher_main
from code_templates.scaffold import ScaffoldError, projects_root
from code_templates.task_template import main as task_main
from pipeline import registry
from shepherd_rpc import RpcClient

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def forget_modules(package: str) -> None:
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@pytest.fixture
def projects_pkg(tmp_path, monkeypatch):
    """An empty projects package the registry scans instead of the real one; yields its directory."""
    package = f"scaffold_projects_{uuid.uuid4().hex[:10]}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text('"""Projects for one test."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PROJECTS_PACKAGE", package)
    registry.reload()
    yield root
    monkeypatch.undo()
    forget_modules(package)
    registry.reload()


def ruff_clean(*paths: Path) -> None:
    result = subprocess.run(
        [str(RUFF), "check", "--isolated", "--no-cache", "--select", "E,F,I,UP,B", "--line-length", "110",
         *map(str, paths)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- add_project -------------------------------------------------------------------------------


def test_add_project_writes_a_package_the_registry_picks_up(projects_pkg):
    # When a project is scaffolded into the scanned package
    written = add_project("flood_maps", "Flood extents from radar.")
    # Then its files exist, are clean, and the registry lists it with no steps
    assert projects_root() == projects_pkg
    assert sorted(p.relative_to(projects_pkg).as_posix() for p in written) == [
        "flood_maps/README.md",
        "flood_maps/__init__.py",
        "flood_maps/steps.py",
        "flood_maps/workers/README.md",
    ]
    ruff_clean(projects_pkg / "flood_maps" / "__init__.py", projects_pkg / "flood_maps" / "steps.py")
    registry.reload()
    project = registry.get_project("flood_maps")
    assert project.description == "Flood extents from radar."
    assert dict(project.steps) == {}


def test_add_project_takes_an_explicit_root(tmp_path):
    add_project("other", root=tmp_path)
    assert (tmp_path / "other" / "steps.py").is_file()
    assert '"""The other project."""' in (tmp_path / "other" / "__init__.py").read_text()


@pytest.mark.parametrize(
    ("name", "message"), [("Flood-Maps", "must be snake_case"), ("def", "Python keyword")]
)
def test_add_project_refuses_bad_names(tmp_path, name, message):
    with pytest.raises(ScaffoldError, match=message):
        add_project(name, root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_add_project_refuses_an_existing_project_and_leaves_it_alone(tmp_path):
    add_project("flood_maps", root=tmp_path)
    steps = tmp_path / "flood_maps" / "steps.py"
    steps.write_text("# edited\n")
    with pytest.raises(ScaffoldError, match="project 'flood_maps' already exists"):
        add_project("flood_maps", root=tmp_path)
    assert steps.read_text() == "# edited\n"


# --- publisher_template --write ----------------------------------------------------------------


def test_write_adds_steps_the_registry_then_sees(projects_pkg, capsys):
    # Given a fresh project (the only one, so --project may be left out)
    add_project("flood_maps")
    registry.reload()
    # When two steps are written one after the other
    argv = ["--task_name", "fetch_radar", "--timeout", "900", "--retries", "2", "--write"]
    assert publisher_main(argv) == 0
    assert publisher_main(["--task_name", "mask_water", "--project", "flood_maps", "--write"]) == 0
    # Then the registry sees both, with their settings, and the file stays clean
    assert "Added step 'mask_water'" in capsys.readouterr().out
    registry.reload()
    steps = registry.get_project("flood_maps").steps
    assert list(steps) == ["fetch_radar", "mask_water"]
    assert (steps["fetch_radar"].timeout, steps["fetch_radar"].retries, steps["fetch_radar"].queue) == (
        900, 2, "fetch_radar")
    ruff_clean(projects_pkg / "flood_maps" / "steps.py")


def test_write_refuses_a_name_another_project_has(projects_pkg, capsys):
    add_project("first")
    add_project("second")
    registry.reload()
    assert publisher_main(["--task_name", "shared", "--project", "first", "--write"]) == 0
    before = (projects_pkg / "second" / "steps.py").read_text()
    assert publisher_main(["--task_name", "shared", "--project", "second", "--write"]) == 2
    assert "step 'shared' already exists in project 'first'" in capsys.readouterr().err
    assert (projects_pkg / "second" / "steps.py").read_text() == before


def test_write_undoes_an_edit_the_registry_cannot_load(projects_pkg, capsys):
    # Given a project whose steps.py loads now but fails once STEPS has an entry
    add_project("fussy")
    steps = projects_pkg / "fussy" / "steps.py"
    steps.write_text(steps.read_text() + 'if STEPS:\n    raise RuntimeError("no steps allowed")\n')
    original = steps.read_text()
    registry.reload()
    # When a step is written into it
    assert publisher_main(["--task_name", "new_step", "--project", "fussy", "--write"]) == 2
    # Then the edit is undone and the registry loads the project as before
    assert "could not load" in capsys.readouterr().err
    assert steps.read_text() == original
    registry.reload()
    assert dict(registry.get_project("fussy").steps) == {}


def test_a_broken_project_is_reported_not_raised(projects_pkg, capsys):
    add_project("broken")
    steps = projects_pkg / "broken" / "steps.py"
    steps.write_text(steps.read_text() + 'raise RuntimeError("half-edited")\n')
    registry.reload()
    assert publisher_main(["--task_name", "new_step", "--project", "broken"]) == 2
    assert "registry cannot be loaded (RuntimeError: half-edited)" in capsys.readouterr().err


# --- listing -----------------------------------------------------------------------------------


def test_listing_shows_steps_with_queue_timeout_and_retries(projects_pkg):
    add_project("flood_maps", "Flood extents.")
    add_project("empty")
    registry.reload()
    assert publisher_main(["--task_name", "fetch_radar", "--project", "flood_maps", "--timeout", "90",
                           "--queue", "radar.slow", "--write"]) == 0
    data = describe_projects()
    assert json.loads(json.dumps(data)) == data
    assert [p["name"] for p in data] == ["empty", "flood_maps"]
    assert data[1]["steps"][0] | {"description": ""} == {
        "name": "fetch_radar", "queue": "radar.slow", "timeout": 90, "retries": 0, "description": "",
    }
    text = format_projects(data)
    assert "empty: The empty project.\n  (no steps yet)" in text
    assert "fetch_radar  radar.slow  90s      0" in text


def test_listing_with_no_projects_says_how_to_add_one(projects_pkg):
    assert "manage.py add_project" in format_projects(describe_projects())


def test_registry_files_stay_parseable(projects_pkg):
    add_project("flood_maps")
    for path in (projects_pkg / "flood_maps").rglob("*.py"):
        ast.parse(path.read_text())


# --- management commands -----------------------------------------------------------------------


def test_add_project_command_creates_a_project_the_registry_lists(projects_pkg):
    out = io.StringIO()
    call_command("add_project", "flood_maps", "--description", "Flood extents.", stdout=out)
    assert "Project 'flood_maps' is ready" in out.getvalue()
    assert registry.get_project("flood_maps").description == "Flood extents."


def test_add_project_command_refusals_are_command_errors(projects_pkg):
    with pytest.raises(CommandError, match="must be snake_case"):
        call_command("add_project", "Flood-Maps")
    call_command("add_project", "flood_maps", stdout=io.StringIO())
    with pytest.raises(CommandError, match="project 'flood_maps' already exists"):
        call_command("add_project", "flood_maps")


def test_add_project_command_takes_a_projects_dir(tmp_path):
    call_command("add_project", "elsewhere", "--projects-dir", str(tmp_path), stdout=io.StringIO())
    assert (tmp_path / "elsewhere" / "workers" / "README.md").is_file()


def test_list_projects_command_as_text_and_json(projects_pkg):
    call_command("add_project", "flood_maps", stdout=io.StringIO())
    assert publisher_main(["--task_name", "fetch_radar", "--retries", "1", "--write"]) == 0
    text, as_json = io.StringIO(), io.StringIO()
    call_command("list_projects", stdout=text)
    call_command("list_projects", "--json", stdout=as_json)
    assert "fetch_radar  fetch_radar  300s     1" in text.getvalue()
    assert json.loads(as_json.getvalue())[0]["steps"][0]["queue"] == "fetch_radar"


@pytest.mark.parametrize("command", ["add_project", "list_projects"])
def test_management_commands_have_help(command):
    result = subprocess.run([sys.executable, "manage.py", command, "--help"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "projects" in result.stdout


# --- the generated worker on the real broker ---------------------------------------------------


@pytest.fixture
def worker_process(tmp_path):
    """Start a generated worker as ``python PATH`` from an unrelated directory; yields (prefix, results)."""
    script, results, elsewhere = tmp_path / "clean_dates.py", tmp_path / "results", tmp_path / "elsewhere"
    results.mkdir()
    elsewhere.mkdir()
    argv = ["--task_name", "clean_dates", "--result_file", "dates.json", "--output", str(script)]
    assert task_main(argv) == 0
    # A prefix under the test run's, so the run's clean-up fixture deletes the queues this test creates.
    prefix = f"{os.environ['SHEPHERD_AMQP_PREFIX']}.scaffold-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SHEPHERD_AMQP_PREFIX": prefix,
           "SHEPHERD_RESULT_DIR": str(results)}
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, str(script)], cwd=elsewhere, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    yield prefix, results
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(log.read_text())  # shown by pytest when the test fails


def test_generated_worker_answers_a_real_call(worker_process):
    # Given a worker exactly as task_template generates it, running against RabbitMQ
    prefix, results = worker_process
    client = RpcClient(prefix=prefix, name=f"scaffold-{uuid.uuid4().hex[:8]}").start()
    try:
        # When the step is called through the broker
        result = client.call("clean_dates", context={"column": "date"}, input="s3://bucket/in.csv",
                             timeout=30, wait_limit=60)
    finally:
        client.close()
    # Then the example body's output comes back and its result file was written
    path = results / "dates.json"
    assert result.output == {"result_file": str(path), "input": "s3://bucket/in.csv",
                             "context": {"column": "date"}}
    assert json.loads(path.read_text()) == {"context": {"column": "date"}, "input": "s3://bucket/in.csv"}
