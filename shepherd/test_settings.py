"""Settings for the test suite: the project's settings, with this run's own broker names and state.

Each test session gets its own AMQP prefix and state directory (so sessions sharing one broker
never see each other's queues). They are set in the environment before the settings are read,
so the daemon and workers that tests start as processes inherit the same values.
"""

import os
import tempfile
import uuid

os.environ.setdefault("SHEPHERD_AMQP_PREFIX", f"test-{uuid.uuid4().hex[:8]}")
os.environ.setdefault("SHEPHERD_VAR_DIR", tempfile.mkdtemp(prefix="shepherd-test-"))
os.environ.setdefault("PREFECT_HOME", os.path.join(os.environ["SHEPHERD_VAR_DIR"], "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from shepherd.settings import *  # noqa: E402,F403
