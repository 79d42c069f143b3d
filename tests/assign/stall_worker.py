"""Child process of the store-stall tests (run as a script): ``python stall_worker.py URL SECONDS [LAYER]``.

With LAYER every call is ``assign_layer(user, LAYER)`` instead of ``assign(user, "ranker_v2")``.

Protocol on stdin/stdout (one line each): prints ``ready`` once warm; on ``go`` assigns new users for
SECONDS (one every 5 ms) and prints ``{"n", "none", "worst_ms"}``; on ``flush`` flushes (bounded 30 s)
and prints ``{"pending"}``; on ``again`` assigns new users for 0.5 s, prints ``{"n", "none", "worst_ms",
"last_call"}`` (epoch seconds) and exits at once: the exit-time flush is bounded (2 s by default); the
time it finished is printed on stderr (``atexit-done EPOCH``).
"""

from __future__ import annotations

import atexit
import json
import sys
import time


def _calls(assign, prefix: str, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    n = none = 0
    worst = 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        answer = assign(f"{prefix}-{n}", "ranker_v2")
        worst = max(worst, time.perf_counter() - start)
        n += 1
        none += answer is None
        time.sleep(0.005)
    return {"n": n, "none": none, "worst_ms": worst * 1000}


def main() -> None:
    url, seconds = sys.argv[1], float(sys.argv[2])
    # registered before abcore.assign is imported, so it runs after abcore's exit-time flush
    atexit.register(lambda: print(f"atexit-done {time.time()}", file=sys.stderr, flush=True))
    from abcore.assign import assign, assign_layer, configure, flush

    if len(sys.argv) > 3:
        layer = sys.argv[3]
        assign = lambda user, _experiment: assign_layer(user, layer)  # noqa: E731 - same calls, asked by surface

    client = configure(url, flush_interval=0.2)
    assert assign("warm-up", "ranker_v2") is not None
    flush(timeout=30)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "go":
            print(json.dumps(_calls(assign, "stall", seconds)), flush=True)
        elif command == "flush":
            flush(timeout=30)
            print(json.dumps({"pending": client.pending_events()}), flush=True)
        elif command == "again":
            result = _calls(assign, "exit", 0.5)
            result["last_call"] = time.time()
            print(json.dumps(result), flush=True)
            return


if __name__ == "__main__":
    main()
