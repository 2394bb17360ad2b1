"""What the registry knows, as plain data and as a readable table (``manage.py list_projects``)."""

from __future__ import annotations

from typing import Any

from pipeline import registry


def describe_projects() -> list[dict[str, Any]]:
    """Every project with its steps' queue, timeout and retries, JSON-serialisable."""
    return [
        {
            "name": project.name,
            "description": project.description,
            "steps": [
                {
                    "name": step.name,
                    "queue": step.queue,
                    "timeout": step.timeout,
                    "retries": step.retries,
                    "description": step.description,
                }
                for step in project.steps.values()
            ],
        }
        for project in registry.all_projects().values()
    ]


def format_projects(projects: list[dict[str, Any]]) -> str:
    """A plain-text listing: one block per project, one aligned row per step."""
    if not projects:
        return "No projects. Create one with: python manage.py add_project NAME\n"
    lines: list[str] = []
    for project in projects:
        description = project["description"]
        lines.append(f"{project['name']}: {description}" if description else project["name"])
        rows = [("step", "queue", "timeout", "retries")]
        rows += [(s["name"], s["queue"], f"{s['timeout']:g}s", str(s["retries"])) for s in project["steps"]]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        if len(rows) == 1:
            lines.append("  (no steps yet)")
        else:
            lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                      for row in rows]
        lines.append("")
    return "\n".join(lines)
