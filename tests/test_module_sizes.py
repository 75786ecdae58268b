"""One job per module: no module of core/ over 400 lines, no module of pages/ over 300."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMITS = {"core": 400, "pages": 300}


@pytest.mark.parametrize("folder", sorted(LIMITS))
def test_no_module_is_over_its_limit(folder: str):
    limit = LIMITS[folder]
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > limit
    }
    assert not long, f"over {limit} lines: {long}"
