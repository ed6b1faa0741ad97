"""The plan on disk against the plan it replaced, side by side in one process (issue 10 item 9).

Old: the committed rows read into a dict and compared with a list of entries (`plan_changes` at
8696abd, extracted with `git show 8696abd:dq_pipeline/sync/write/plan.py > dq_pipeline/sync/_old_plan.py`).
New: the entries written to an entry spool, the plan joined in SQLite, the entries to embed read
back. SQLite record + Qdrant Edge, hashing embedder, 1% of the entries changed.

    git show 8696abd:dq_pipeline/sync/write/plan.py > dq_pipeline/sync/_old_plan.py
    python benchmarks/bench_plan.py 100000
    rm dq_pipeline/sync/_old_plan.py
"""
import sys
import tempfile
import time
from pathlib import Path

from dq_pipeline.catalog import Entry, EntrySpool
from dq_pipeline.embedding import HashingEmbedder
from dq_pipeline.sync import SyncedStore
from dq_pipeline.sync import _old_plan as old
from dq_pipeline.sync.write.plan import plan_sync

N = int(sys.argv[1])
tmp = Path(tempfile.mkdtemp())
entries = [Entry(f"t{i//1000}.c{i}", "column", f"column {i} of table t{i//1000}: the {i%97}th measure", {"table": f"t{i//1000}", "i": i}) for i in range(N)]
with SyncedStore.open(f"sqlite:///{tmp/'dq.sqlite3'}", qdrant_path=str(tmp/'q'), embedded_engine="edge") as store:
    t = time.perf_counter()
    store.sync("big", entries, HashingEmbedder(32))
    print("fresh sync", round(time.perf_counter() - t, 1), flush=True)
    changed = [Entry(e.key, e.kind, e.text + (" revised" if i % 100 == 0 else ""), e.payload) for i, e in enumerate(entries)]
    model = HashingEmbedder(32).model_id
    for rnd in range(3):
        t = time.perf_counter()
        p = old.plan_changes(old.stored_rows(store.engine, "big"), changed, model)
        n_old = (len(p.inserts), len(p.updates), len(p.deletes), p.unchanged)
        t_old = time.perf_counter() - t
        t = time.perf_counter()
        spool = EntrySpool.of(changed)
        with plan_sync(store.engine, "big", spool, model) as q:
            n_new = (q.inserted, q.updated, q.deleted, q.unchanged)
            for _part in q.to_embed():
                pass
        spool.close()
        t_new = time.perf_counter() - t
        print(f"round {rnd}: old plan {t_old:.2f} s, new (spool + plan + read back) {t_new:.2f} s, ratio {t_new/t_old:.2f}; {n_old} == {n_new}: {n_old == n_new}", flush=True)
