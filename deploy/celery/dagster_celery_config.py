"""Settings of the Celery workers that run dq_pipeline's steps (DQ_EXECUTOR=celery).

`celery -A dagster_celery.app worker` imports a module of this name when it is on the worker's
PYTHONPATH (dagster_celery/make_app.py) and applies its settings over dagster-celery's defaults.
The run workers submit the steps with the executor's settings, read from the same variables
(dq_pipeline/defs/executors.py): workers and runs must agree on broker and queue, or no step is
ever picked up. The queue is not set here: dagster-celery replaces the worker's queue list after
reading this module, so the worker is told with `-Q "${DQ_CELERY_QUEUE:-dagster}"`.
"""

# Read through their declarations (dq_pipeline/settings.py), as the run workers read them.
from dq_pipeline.settings import setting_value

broker_url = setting_value("DQ_CELERY_BROKER_URL") or "pyamqp://guest@localhost:5672//"
result_backend = setting_value("DQ_CELERY_BACKEND_URL") or "rpc://"

# A step runs for seconds to minutes: a worker takes the next one only when it has a free process,
# so a step never waits behind a busy process while another worker is idle.
worker_prefetch_multiplier = 1

# The code location, imported once by the worker's main process before it forks its pool: a step
# then starts without importing it again, and a definition that cannot load (a bad DQ_* value)
# stops the worker at start instead of failing every step. Needs the same DQ_* environment as the
# code server.
imports = ("dq_pipeline.definitions",)
