"""Templates render to clean Python; the generators refuse bad names and never overwrite silently."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from code_templates import render, template_names
from code_templates.new_project import render_project
from code_templates.publisher_template import main as publisher_main
from code_templates.publisher_template import render_step
from code_templates.scaffold import ScaffoldError, validate_description, validate_file_name, validate_name
from code_templates.steps_file import insert_step
from code_templates.task_template import main as task_main
from code_templates.task_template import render_worker

REPO = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent / "ruff"


def assert_clean_python(source: str, path: Path) -> None:
    """``source`` parses and passes ruff with the project's rules (E, F, I, UP, B; 110 columns)."""
    ast.parse(source)
    path.write_text(source, encoding="utf-8")
    result = subprocess.run(
        [str(RUFF), "check", "--isolated", "--no-cache", "--select", "E,F,I,UP,B", "--line-length", "110",
         str(path)],
        capture_output=True, text=True, cwd=path.parent, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def steps_file_with(*entries: str) -> str:
    source = render_project("demo", "A demo project.")["steps.py"]
    for entry in entries:
        source = insert_step(source, entry)
    return source


# --- templates ---------------------------------------------------------------------------------


def test_every_template_is_covered_here():
    assert template_names() == [
        "project_init.py.j2",
        "project_readme.md.j2",
        "project_steps.py.j2",
        "project_workers_readme.md.j2",
        "step.py.j2",
        "worker.py.j2",
    ]


def test_project_python_files_render_clean(tmp_path):
    files = render_project("flood_maps", 'Flood maps with "quotes" and a \\ backslash.')
    assert_clean_python(files["__init__.py"], tmp_path / "__init__.py")
    assert_clean_python(files["steps.py"], tmp_path / "steps.py")
    docstring = ast.get_docstring(ast.parse(files["__init__.py"]))
    assert docstring == 'Flood maps with "quotes" and a \\ backslash.'


def test_project_readmes_name_the_project():
    files = render_project("flood_maps", "Flood maps.")
    assert files["README.md"].startswith("# flood_maps\n\nFlood maps.\n")
    assert "projects/flood_maps/workers/" in files["workers/README.md"]


def test_step_declaration_renders_clean_inside_a_steps_file(tmp_path):
    # Given two declarations, one with a custom queue and a fractional timeout
    first = render_step(name="clean_dates", description="Normalise dates.", timeout=120, retries=2)
    second = render_step(name="geocode", timeout=2.5, queue="geo.slow")
    # When both are inserted into a new project's steps.py
    source = steps_file_with(first, second)
    # Then the file is clean and declares both with their settings
    assert_clean_python(source, tmp_path / "steps.py")
    assert "timeout=120,\n        retries=2," in source
    assert 'queue="geo.slow"' in source and "timeout=2.5" in source
    assert "queue=" not in first


def test_worker_renders_clean(tmp_path):
    source = render_worker(name="clean_dates", result_file="dates.csv", queue="dates.q",
                           description='Normalise "dates".')
    assert_clean_python(source, tmp_path / "clean_dates.py")
    assert 'RESULT_FILE = "dates.csv"' in source
    assert '@worker.step("clean_dates", queue="dates.q")' in source
    assert "def clean_dates(context: dict[str, Any], input: Any)" in source
    assert source.rstrip().endswith("worker.run()")


def test_render_refuses_a_missing_variable():
    with pytest.raises(jinja2.UndefinedError):
        render("step.py.j2", name="x")


# --- insertion into steps.py -------------------------------------------------------------------


@pytest.mark.parametrize(
    "original",
    [
        "STEPS = []\n",
        "STEPS = [\n]\n",
        "STEPS = [\n    A,\n]\n",
        "STEPS = [\n    A\n]\n",
        "STEPS = [A, B]\n",
        "STEPS = [\n    A,  # the first, [not] the last\n]\nOTHER = 1\n",
        "STEPS: list = [\n    A(name='é'),\n]\n",
    ],
)
def test_insert_step_keeps_the_file_valid_and_appends_last(original):
    result = insert_step(original, "NEW(\n    x=1,\n)")
    steps = next(n for n in ast.parse(result).body if isinstance(n, ast.Assign | ast.AnnAssign)).value
    assert isinstance(steps, ast.List)
    assert ast.unparse(steps.elts[-1]) == "NEW(x=1)"
    assert len(steps.elts) == len(ast.parse(original).body[0].value.elts) + 1


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("X = 1\n", "defines no STEPS list"),
        ("STEPS = tuple()\n", "is not a list literal"),
        ("STEPS = [\n", "is not valid Python"),
    ],
)
def test_insert_step_refuses_files_it_cannot_edit_safely(source, message):
    with pytest.raises(ScaffoldError, match=message):
        insert_step(source, "NEW()")


# --- name rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["CamelCase", "with-dash", "1st", "_private", "has space", "", "import", "é", "x" * 51]
)
def test_bad_names_are_refused(name):
    with pytest.raises(ScaffoldError):
        validate_name(name)


def test_name_messages_say_what_to_do():
    with pytest.raises(ScaffoldError, match=r"must be snake_case.*for example 'clean_dates'"):
        validate_name("Clean-Dates")
    with pytest.raises(ScaffoldError, match="is a Python keyword; choose another, e.g. 'class_'"):
        validate_name("class")


def test_descriptions_and_result_files_are_checked():
    assert validate_description("  two\n lines ") == "two lines"
    with pytest.raises(ScaffoldError, match="at most 100"):
        validate_description("x" * 101)
    with pytest.raises(ScaffoldError, match="plain file name"):
        validate_file_name("../out.csv")


# --- publisher_template ------------------------------------------------------------------------


def test_publisher_prints_a_declaration(capsys):
    assert publisher_main(["--task_name", "clean_dates", "--project", "ids_drr", "--timeout", "60",
                           "--retries", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Add to STEPS in projects/ids_drr/steps.py")
    assert 'name="clean_dates"' in out and "timeout=60," in out and "retries=3," in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task_name", "CleanDates", "--project", "ids_drr"], "must be snake_case"),
        (["--task_name", "skip_column", "--project", "ids_drr"],
         "already exists in project 'generic_transformations'"),
        (["--task_name", "sentinel", "--project", "ids_drr"], "already exists in project 'ids_drr'"),
        (["--task_name", "clean_dates"], "--project is required"),
        (["--task_name", "clean_dates", "--project", "nope"], "unknown project 'nope'"),
        (["--task_name", "clean_dates", "--project", "ids_drr", "--timeout", "0"],
         "--timeout must be a positive number"),
        (["--task_name", "clean_dates", "--project", "ids_drr", "--retries", "-1"], "--retries must be 0"),
    ],
)
def test_publisher_refusals(argv, message, capsys):
    assert publisher_main(argv) == 2
    assert message in capsys.readouterr().err


def test_publisher_force_gives_a_clashing_name_its_own_queue(capsys):
    assert publisher_main(["--task_name", "skip_column", "--project", "ids_drr", "--force"]) == 0
    assert 'queue="ids_drr.skip_column"' in capsys.readouterr().out


# --- task_template -----------------------------------------------------------------------------


def test_task_template_prints_a_worker_with_the_registered_queue_and_description(capsys):
    assert task_main(["--task_name", "skip_column", "--result_file", "out.csv"]) == 0
    out = capsys.readouterr().out
    assert "Drop one or more columns." in out
    assert '@worker.step("skip_column")\ndef skip_column(' in out
    assert 'RESULT_FILE = "out.csv"' in out


def test_task_template_writes_and_never_overwrites_without_force(tmp_path, capsys):
    target = tmp_path / "workers" / "clean_dates.py"
    assert task_main(["--task_name", "clean_dates", "--result_file", "a.csv", "--output", str(target)]) == 0
    assert "python clean_dates.py" in target.read_text()
    target.write_text("# my filled-in handler\n")
    assert task_main(["--task_name", "clean_dates", "--result_file", "a.csv", "--output", str(target)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "# my filled-in handler\n"
    assert task_main(["--task_name", "clean_dates", "--result_file", "b.csv", "--output", str(target),
                      "--force"]) == 0
    assert 'RESULT_FILE = "b.csv"' in target.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task_name", "Clean", "--result_file", "a.csv"], "must be snake_case"),
        (["--task_name", "worker", "--result_file", "a.csv"], "would shadow a name"),
        (["--task_name", "clean", "--result_file", "dir/a.csv"], "plain file name"),
    ],
)
def test_task_template_refusals(argv, message, capsys):
    assert task_main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "task_template.py"],
        [sys.executable, "-m", "code_templates.task_template"],
        [sys.executable, "-m", "code_templates.publisher_template"],
    ],
)
def test_commands_have_help(command):
    result = subprocess.run([*command, "--help"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--task_name" in result.stdout


def test_root_entry_point_and_module_print_the_same_worker():
    argv = ["--task_name", "skip_column", "--result_file", "out.csv"]
    outputs = [
        subprocess.run([sys.executable, *entry, *argv], cwd=REPO, capture_output=True, text=True,
                       check=True).stdout
        for entry in (["task_template.py"], ["-m", "code_templates.task_template"])
    ]
    assert outputs[0] == outputs[1] and "def skip_column(" in outputs[0]
