"""The code says what it does, not where it came from: no project-history words in the package, its tests
and its benchmarks (the docs are checked in ``tests/docs``).

Comments, docstrings, help texts and OpenAPI summaries are read by users who cannot know the project's
history, so "issue 15", "seed 002's body" or "branch issue-7" tell them nothing. A real seed is not
history: ``seed=1`` parameters and a line that says which hash or random generator the seed belongs to
(``MurmurHash3 ... (seed 0)``) pass.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "abcore", ROOT / "tests", ROOT / "benchmarks"]

#: "issue 15", "issue #15", "branch issue", "seed 002", "Seed 4's": the words of the project's history.
#: (A project document is "seed 002" or "Seed 4's"; a random seed is a plain number: "seed 11".)
HISTORY = re.compile(r"\bissue ?#?\d+|\bbranch issue|\bseed[ -]?#?0\d+|\bseed \d+'s", re.IGNORECASE)
#: A line that names the hash or random generator a seed belongs to holds a real seed.
REAL_SEED = re.compile(r"murmur|hash|random|rng|numpy|np\.", re.IGNORECASE)


def _history_words(line: str) -> list[str]:
    """The project-history words of one source line (a real seed on a hash or RNG line is not one)."""
    words = [m.group(0) for m in HISTORY.finditer(line)]
    if REAL_SEED.search(line):
        words = [w for w in words if not w.lower().startswith("seed")]
    return words


def test_the_rule_tells_history_from_real_seeds() -> None:
    assert _history_words('summary="Record a conversion (seed 002)"') == ["seed 002"]
    assert _history_words("# fixed in issue #15") == ["issue #15"]
    assert _history_words("see branch issue-7") == ["branch issue"]
    assert _history_words("MurmurHash3 x86 32-bit (seed 0, unsigned)") == []
    assert _history_words("mmh3.hash(key, seed=1)") == []
    assert _history_words("rng = np.random.default_rng(seed)") == []
    assert _history_words("Seed 4's deploy-winner") == ["Seed 4's"]
    assert _history_words("deterministic (seed 11)") == []


def test_no_history_words_in_the_code() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}: {', '.join(words)}"
        for folder in SOURCES
        for path in sorted(folder.rglob("*.py"))
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if (words := _history_words(line))
    ]
    assert not found, "say what the code does instead of where it came from:\n" + "\n".join(found)
