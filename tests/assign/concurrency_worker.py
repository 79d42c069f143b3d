"""Child process for the concurrency tests (run as a script: needs only the database URL).

    python concurrency_worker.py URL EXPERIMENT FORCE_VARIANT START_AT MODE USER_IDS_CSV

Builds its own engine and assigner, then - to make the race meaningful - replaces its cached
split so that every *new* user would go to variant index FORCE_VARIANT (as a process with a stale
view of the allocations would). It waits until START_AT (epoch seconds) so all children collide,
assigns every user (MODE "single": assign() one by one; "many": one assign_many batch) and prints
a JSON object {user_id: variant_id or null} on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time


def main() -> None:
    url, experiment, force, start_at, mode, users_csv = sys.argv[1:7]
    from abcore.assign import Assigner, cumulative_allocations

    client = Assigner(url, cache_ttl=3600.0, timeout=30.0, retry_after=0.0)
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
        answers = client.assign_many(users, experiment)
    else:
        answers = [client.assign(u, experiment) for u in users]
    client.flush()
    out = {u: (a.variant_id if a is not None else None) for u, a in zip(users, answers, strict=True)}
    new = sum(1 for a in answers if a is not None and a.is_new)
    client.close()
    print(json.dumps({"answers": out, "new": new}))


if __name__ == "__main__":
    main()
