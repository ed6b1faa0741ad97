"""Which executor runs the steps of a run: Dagster's multiprocess executor (the default), or Celery.

DQ_EXECUTOR is read when the code location loads, like DQ_SYNC_CRON, because an executor is part of
the definitions:

* unset or `multiprocess`: Dagster's default, every step a process of its own beside the run worker;
  the `dq_qdrant` pool bounds the steps that open the stores.
* `celery`: dagster-celery's `celery_executor`; the run worker submits each step as a task to a
  broker and `celery -A dagster_celery.app worker` processes (on this machine or others) run them.
  The pool still bounds the stores' steps: the Celery executor claims the same instance slots.
  Needs the `celery` extra. Step outputs are files under the instance's storage folder, so every
  worker must see that folder at the same path (one machine, or a shared volume; deploy/README.md).

The broker and the result backend come from DQ_CELERY_BROKER_URL and DQ_CELERY_BACKEND_URL, bound
by name (`{"env": ...}`): a broker URL may hold a password, and nothing the instance stores may.
Unset, dagster-celery's defaults apply (RabbitMQ on localhost, the `rpc://` backend). DQ_CELERY_QUEUE
names the queue the steps are sent to (default `dagster`, dagster-celery's): deployments sharing a
broker keep apart by it, as they do in Qdrant by DQ_NAMESPACE; the workers consume it (`-Q`). The
workers read the same variables (deploy/celery/dagster_celery_config.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from ..settings import CELERY, MULTIPROCESS, setting_value

EXECUTOR_ENV = "DQ_EXECUTOR"
BROKER_ENV = "DQ_CELERY_BROKER_URL"
BACKEND_ENV = "DQ_CELERY_BACKEND_URL"
QUEUE_ENV = "DQ_CELERY_QUEUE"
__all__ = ["BACKEND_ENV", "BROKER_ENV", "CELERY", "EXECUTOR_ENV", "MULTIPROCESS", "QUEUE_ENV", "executor_from_env", "executor_name"]


def executor_name(env: Mapping[str, str] | None = None) -> str:
    """DQ_EXECUTOR: `multiprocess` (the default) or `celery`; anything else is a configuration error."""
    return setting_value(EXECUTOR_ENV, env)


def executor_from_env(env: Mapping[str, str] | None = None) -> Any | None:
    """The executor the definitions use; None keeps Dagster's default (multiprocess)."""
    if executor_name(env) == MULTIPROCESS:
        return None
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigurationError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install -e '.[celery]' (dagster-celery==0.29.27)"
        ) from None
    config: dict[str, Any] = {}
    # Bound by name: the values (which may hold a password) are read by the executor, never stored.
    if setting_value(BROKER_ENV, env):
        config["broker"] = {"env": BROKER_ENV}
    if setting_value(BACKEND_ENV, env):
        config["backend"] = {"env": BACKEND_ENV}
    queue = setting_value(QUEUE_ENV, env)
    if queue:
        # dagster-celery sends every step without a `dagster-celery/queue` tag to the app's default queue.
        config["config_source"] = {"task_default_queue": queue}
    return celery_executor.configured(config, name="dq_celery_executor") if config else celery_executor
