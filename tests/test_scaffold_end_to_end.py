"""From nothing to a pipeline run on a new step: add_project, publisher_template, task_template."""

from __future__ import annotations

import sys

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

import projects
from code_templates import publisher_template, task_template
from code_templates.scaffold import refresh_registry
from tests.factories import token_for
from tests.support.processes import Processes, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

HANDLER = '''    """Shout the input back with the context's suffix."""
    return str(input).upper() + context["suffix"]
'''


@pytest.fixture
def project_dir(tmp_path, monkeypatch):
    """A directory outside the checkout that holds new projects, as SHEPHERD_PROJECT_DIRS would."""
    extra = tmp_path / "team_projects"
    extra.mkdir()
    monkeypatch.setattr(projects, "__path__", [*projects.__path__, str(extra)])
    monkeypatch.setenv("SHEPHERD_PROJECT_DIRS", str(extra))
    yield extra
    for name in [m for m in sys.modules if m.startswith("projects.loud_")]:
        del sys.modules[name]
    refresh_registry()


def fill_in_handler(script: str) -> str:
    """Replace the generated handler body (everything after the def line up to the main guard)."""
    head, rest = script.split("def shout(", 1)
    signature, body = rest.split("\n", 1)
    tail = body[body.index("\n\nif __name__"):]
    return f"{head}def shout({signature}\n{HANDLER}{tail}"


def test_a_new_project_step_and_worker_run_a_pipeline(project_dir, tmp_path):
    # Given a new project with a step declared and its worker generated from the templates
    call_command("add_project", "loud_words", "--projects-dir", str(project_dir))
    refresh_registry()
    assert publisher_template.main(["--project", "loud_words", "--task_name", "shout", "--write"]) == 0
    steps_py = project_dir / "loud_words" / "steps.py"
    steps_py.write_text(steps_py.read_text()
                        .replace('"properties": {},', '"properties": {"suffix": {"type": "string"}},')
                        .replace('"required": [],', '"required": ["suffix"],'))
    refresh_registry("loud_words")
    worker_path = project_dir / "loud_words" / "workers" / "shout.py"
    assert task_template.main(["--task_name", "shout", "--result_file", "shout.txt",
                               "--output", str(worker_path)]) == 0
    worker_path.write_text(fill_in_handler(worker_path.read_text()))

    # When the generated worker and the daemon run, and a pipeline using the step is submitted
    procs = Processes(tmp_path)
    procs.env["SHEPHERD_PROJECT_DIRS"] = str(project_dir)
    try:
        procs.start("shout-worker", [sys.executable, str(worker_path)])
        procs.daemon()
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Token {token_for()}")
        bad = api.post("/api/pipelines/", {"pipeline_name": "loud", "project": "loud-words",
                                           "transformers_list": [{"name": "shout", "order_no": 1,
                                                                  "context": {}}]}, format="json")
        response = api.post("/api/pipelines/", {
            "pipeline_name": "loud", "project": "loud-words", "data_url": "https://example.org/x",
            "transformers_list": [{"name": "shout", "order_no": 1, "context": {"suffix": "!"}}],
        }, format="json")
        pipeline = wait_until(
            lambda: (body := api.get(response.json()["url"]).json())["status"] in ("succeeded", "failed")
            and body,
            timeout=60, what="the pipeline on the new step to finish",
        )
    except AssertionError:
        print(procs.logs())
        raise
    finally:
        procs.stop_all()

    # Then the schema filled in is enforced, and the handler's output is the pipeline's
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "transformers_list[0].context.suffix"
    assert pipeline["status"] == "succeeded", procs.logs()
    assert pipeline["output"] == "HTTPS://EXAMPLE.ORG/X!"


def test_a_running_api_accepts_a_project_added_after_it_started(project_dir):
    from pipeline import registry

    assert "loud_late" not in registry.all_projects()  # the API has read the registry already
    package = project_dir / "loud_late"
    package.mkdir()
    (package / "__init__.py").write_text('"""Added while the API runs."""\n')
    (package / "steps.py").write_text(
        "from pipeline.registry import StepSpec\n\nSTEPS = [StepSpec(name='whisper')]\n")
    registry._last_reload = 0.0  # as if the last rescan were long ago

    response = APIClient().post(
        "/api/pipelines/", {"pipeline_name": "late", "project": "loud_late",
                            "transformers_list": [{"name": "whisper", "order_no": 1, "context": {}}]},
        format="json", HTTP_AUTHORIZATION=f"Token {token_for()}")

    assert response.status_code == 201, response.content
