"""Child process for the concurrency tests (run as a script: needs only the database URL).

    python concurrency_worker.py URL EXPERIMENT FORCE_VARIANT START_AT MODE USER_IDS_CSV

Builds its own engine and assigner, then - to make the race meaningful - replaces its cached
split so that every *new* user would go to variant index FORCE_VARIANT (as a process with a stale
view of the allocations would). It waits until START_AT (epoch seconds) so all children collide,
assigns every user (MODE "single": assign() one by one; "many": one assign_many batch), flushes,
asks again, and prints a JSON object on stdout: ``first`` and ``answers`` ({user_id: variant_id or
null}) of the two passes, ``new`` (rows this process created) and ``corrected`` (first answers the
writer found contradicted by another process's stored row). ``assign`` answers before its row is
written, so a process with a stale split can serve its own variant once; the writer's
read-back then corrects its cache, and the second pass must equal the stored rows.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time


def main() -> None:
    url, experiment, force, start_at, mode, users_csv = sys.argv[1:7]
    from abcore.assign import Assigner, cumulative_allocations

    client = Assigner(url, cache_ttl=3600.0, timeout=30.0, retry_after=0.0, flush_interval=3600.0)
    client.refresh()
    defs = client._defs
    assert defs is not None
    original = defs.by_name[experiment]
    weights = [0.0] * len(original.variants)
    weights[int(force)] = 1.0
    forced = dataclasses.replace(original, cumulative=cumulative_allocations(weights))
    defs.by_name[experiment] = forced
    defs.by_id[forced.id] = forced
    users = users_csv.split(",")
    while time.time() < float(start_at):
        time.sleep(0.001)
    if mode == "many":
        first = client.assign_many(users, experiment)
    else:
        first = [client.assign(u, experiment) for u in users]
    client.flush(timeout=60)
    again = [client.assign(u, experiment, expose=False) for u in users]
    writer = client.writer
    assert writer is not None
    # the batch path writes its rows itself, before returning; single calls through the writer
    new = sum(1 for a in first if a is not None and a.is_new) if mode == "many" else writer.rows_written
    corrected = client.corrected
    client.close()

    def ids(answers: list) -> dict:
        return {u: (a.variant_id if a is not None else None) for u, a in zip(users, answers, strict=True)}

    print(json.dumps({"first": ids(first), "answers": ids(again), "new": new, "corrected": corrected}))


if __name__ == "__main__":
    main()
