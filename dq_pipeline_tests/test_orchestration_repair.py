"""Auto-repair classifies a failed run by the error its step attached (issue 11 item 7), not by the
step's name: a transient failure in the parsing step is repaired, a terminal one in the embedding
step (a bad DQ_EMBEDDING_BACKEND) is not, and a failure without classification counts as transient.

The failing runs are real runs (execute_in_process) of jobs whose steps carry the production step
names and raise `dagster.Failure` with the metadata the asset steps attach.
"""

import pytest
from dagster import (
    Failure,
    RunRequest,
    SkipReason,
    build_run_status_sensor_context,
    instance_for_test,
    job,
    op,
)

from dq_pipeline.defs.sensors import auto_repair_sensor, classify_failure

pytestmark = [pytest.mark.dagster]


def failing_job(step_name: str, metadata: dict | None):
    @op(name=step_name)
    def step():
        raise Failure(description="injected", metadata=metadata or {}, allow_retries=False)

    @job(name=f"sync_catalog_{step_name}")
    def the_job():
        step()

    return the_job


def failed_run(instance, step_name: str, metadata: dict | None, catalog: str = "sales/orders"):
    result = failing_job(step_name, metadata).execute_in_process(
        instance=instance, raise_on_error=False, tags={"dagster/partition": catalog, "dq/catalog": catalog}
    )
    assert not result.success
    context = build_run_status_sensor_context(
        sensor_name="auto_repair_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    return result, context


@pytest.mark.parametrize(
    ("step", "metadata", "repaired"),
    [
        # A file unreadable for a moment while parsing: transient, so repaired (and the sensor re-requests it).
        ("catalog_entries", {"dq/error_kind": "StoreUnavailable", "dq/transient": True}, True),
        # Refused input: terminal wherever it is reported.
        ("catalog_entries", {"dq/refused": True, "dq/error_kind": "CatalogError", "dq/transient": False}, False),
        # A bad DQ_EMBEDDING_BACKEND fails in the embedding step: terminal configuration, not repaired.
        ("catalog_embeddings", {"dq/error_kind": "ConfigurationError", "dq/transient": False}, False),
        # Lost lock at commit: terminal.
        ("catalog_index", {"dq/error_kind": "LockLost", "dq/transient": False}, False),
        # No classification: transient.
        ("catalog_index", None, True),
    ],
)
def test_auto_repair_follows_the_error_class_not_the_step(step: str, metadata: dict | None, repaired: bool) -> None:
    with instance_for_test() as instance:
        result, context = failed_run(instance, step, metadata)
        outcome = auto_repair_sensor(context)
        if repaired:
            assert isinstance(outcome, RunRequest) and outcome.run_key == result.run_id
            assert outcome.tags["dq/catalog"] == "sales/orders"
        else:
            assert isinstance(outcome, SkipReason)
            assert "failed terminally" in outcome.skip_message and metadata["dq/error_kind"] in outcome.skip_message


def test_classify_failure_terminal_wins_over_transient() -> None:
    with instance_for_test() as instance:
        _, context = failed_run(instance, "catalog_index", {"dq/error_kind": "LockLost", "dq/transient": False})
        events = context.get_step_failure_events()
    assert classify_failure(events) == (False, "LockLost")
    assert classify_failure([]) == (True, "run-level failure")
