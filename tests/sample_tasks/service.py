"""The BentoML service with the test-only sample tasks registered before it builds its app: what the live-server
tests start (`bentoml serve tests.sample_tasks.service:RelapseRiskService`), so that a real server serves the
sample tasks' champions (tests/served_models.py) as the in-process tests do."""

from features.tasks import TASKS
from tests.sample_tasks import sample_tasks

TASKS.update(sample_tasks())

from serving.service import RelapseRiskService  # noqa: E402  (after the registration: it builds the app on import)

__all__ = ["RelapseRiskService"]
