"""Shepherd projects: one package per project, each with a ``steps.py`` registry and ``workers/``.

Projects kept outside this checkout (in a team's own repository, say) are found too: list their
parent directories in SHEPHERD_PROJECT_DIRS, separated like PATH.
"""

import os

__path__ += [d for d in os.environ.get("SHEPHERD_PROJECT_DIRS", "").split(os.pathsep) if d]  # noqa: F821
