"""README's Promises section names, for each guarantee, tests that exist."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def test_every_promise_names_tests_that_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("\n## Promises\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| **")]
    assert len(rows) >= 10
    for row in rows:
        refs = re.findall(r"`(test_\w+\.py)::(test_\w+)`", row)
        assert refs, f"a promise without a test: {row[:80]}"
        for file, name in refs:
            source = (REPO_ROOT / "tests" / file).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{file}::{name} does not exist"
