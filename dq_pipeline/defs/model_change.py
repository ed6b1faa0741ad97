"""The model change as Dagster jobs, one per step (sync/write/model_roles.py has the protocol):

* `model_build`: embed the standby model (the configured one, if it is not live) for every catalog,
  under each catalog's lock, logging catalogs done / total as it goes;
* `model_switch`: make the standby live (refused unless it is built and every catalog verifies);
* `model_rollback`: switch back to the model the last switch replaced (embeds nothing);
* `model_drop_old`: delete the standby model's rows and collection.

Each opens the synced store, so each claims the Qdrant pool.
"""


from dagster import Failure, OpExecutionContext, Output, job, op

from ..errors import ConfigurationError
from .assets import TRANSIENT_RETRY, step_failure
from .partitions import QDRANT_POOL
from .resources import EmbedderResource, SyncedStoreResource

MODEL_BUILD_JOB, MODEL_SWITCH_JOB, MODEL_ROLLBACK_JOB, MODEL_DROP_OLD_JOB = "model_build", "model_switch", "model_rollback", "model_drop_old"


def _refused(exc: ConfigurationError) -> Failure:
    """A step refused for a reason a retry cannot change (not built, nothing to switch to)."""
    return Failure(description=str(exc), allow_retries=False)


@op(pool=QDRANT_POOL, retry_policy=TRANSIENT_RETRY, tags={"stage": "model"}, description="Embed the standby model for every catalog.")
def build_standby_model(context: OpExecutionContext, embedder: EmbedderResource, store: SyncedStoreResource):
    try:
        with store.open() as synced:
            live = synced.models().get("live")
            configured = embedder.load() if live is None or embedder.model_id() != live.model_id else None
            total = len(synced.mirrored_catalogs())
            done = 0

            def progress(result) -> None:  # type: ignore[no-untyped-def]
                nonlocal done
                done += 1
                context.log.info(f"{done}/{total} {result.catalog_id}: +{result.inserted} ~{result.updated} -{result.deleted}, embedded {result.embedded}")

            results = synced.build_standby(configured, on_catalog=progress)
            status = synced.model_status()["standby"]
    except ConfigurationError as exc:
        raise _refused(exc) from None
    except Exception as exc:
        raise step_failure(exc) from exc
    yield Output(
        None,
        metadata={
            "standby_model": status["model"],
            "catalogs_done": status["catalogs_done"],
            "catalogs_total": status["catalogs_total"],
            "embedded": sum(r.embedded for r in results),
            "ready_to_switch": status["complete"],
        },
    )


def _switch(context: OpExecutionContext, store: SyncedStoreResource, rollback: bool):  # type: ignore[no-untyped-def]
    try:
        with store.open() as synced:
            live, standby = synced.switch_model(rollback=rollback)
            alias = synced.model_status()["alias_target"]
    except ConfigurationError as exc:
        raise _refused(exc) from None
    except Exception as exc:
        raise step_failure(exc) from exc
    context.log.info(f"live model {live.model_id}; standby {standby.model_id} ({standby.state})")
    yield Output(None, metadata={"live_model": live.model_id, "standby_model": standby.model_id, "alias_target": alias or ""})


@op(pool=QDRANT_POOL, retry_policy=TRANSIENT_RETRY, tags={"stage": "model"}, description="Make the standby model live, atomically.")
def switch_model(context: OpExecutionContext, store: SyncedStoreResource):
    yield from _switch(context, store, rollback=False)


@op(pool=QDRANT_POOL, retry_policy=TRANSIENT_RETRY, tags={"stage": "model"}, description="Switch back to the previous live model.")
def rollback_model(context: OpExecutionContext, store: SyncedStoreResource):
    yield from _switch(context, store, rollback=True)


@op(pool=QDRANT_POOL, retry_policy=TRANSIENT_RETRY, tags={"stage": "model"}, description="Delete the standby model's rows and collection.")
def drop_standby_model(context: OpExecutionContext, store: SyncedStoreResource):
    try:
        with store.open() as synced:
            role = synced.models().get("standby")
            collection = synced.drop_standby()
    except ConfigurationError as exc:
        raise _refused(exc) from None
    except Exception as exc:
        raise step_failure(exc) from exc
    yield Output(None, metadata={"dropped_model": role.model_id if role else "", "dropped_collection": collection or ""})


@job(name=MODEL_BUILD_JOB, description="Build the standby embedding model's collection for every catalog (search keeps serving the live one).")
def model_build_job():
    build_standby_model()


@job(name=MODEL_SWITCH_JOB, description="Make the built standby model live in one atomic switch (record and Qdrant alias).")
def model_switch_job():
    switch_model()


@job(name=MODEL_ROLLBACK_JOB, description="Switch back to the model the last switch replaced; embeds nothing.")
def model_rollback_job():
    rollback_model()


@job(name=MODEL_DROP_OLD_JOB, description="Delete the standby model's rows and collection (no rollback to it afterwards).")
def model_drop_old_job():
    drop_standby_model()


MODEL_JOBS = [model_build_job, model_switch_job, model_rollback_job, model_drop_old_job]
