"""Generate a worker script for a step: ``python task_template.py --task_name NAME --result_file FILE``.

A thin entry point kept at the repository root for the command users know; the generator is
``code_templates.task_template`` (``python -m code_templates.task_template`` does the same).
"""

from __future__ import annotations

import sys

from code_templates.task_template import main

if __name__ == "__main__":
    sys.exit(main())
