"""The test tiers: the check tests/conftest.py runs at collection (every test in exactly one of unit, integration
and device, no slow test unit) names what is wrong, and each file's `# Tier:` line names the tiers its tests are
in. (Unregistered tier markers are refused by --strict-markers.)"""
# Tier: unit.
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import TIERS, tier_problems


def _item(nodeid: str, *marks: str) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, iter_markers=lambda: [SimpleNamespace(name=m) for m in marks])


def test_the_check_names_a_test_with_no_tier_several_tiers_or_slow_as_unit():
    items = [_item("a::ok", "unit"), _item("b::none", "parametrize"), _item("c::two", "integration", "device"),
             _item("d::slow", "slow", "unit"), _item("e::slow_ok", "slow", "integration")]
    problems = tier_problems(items)
    assert [p.split(":")[0] for p in problems] == ["b", "c", "d"], problems
    assert "0 tiers" in problems[0] and "2 tiers ['integration', 'device']" in problems[1]
    assert "slow but unit" in problems[2]


def tier_line_problem(line: str | None, tiers: set[str]) -> str | None:
    """What is wrong with a file's `# Tier:` line (None: nothing) given the tiers its tests are in. The tiers it
    names are the words before any parenthesis: `# Tier: integration` (or unit, device) for a file in one tier,
    `# Tier: unit, except the tests marked integration (what they do).` for a mixed one. Without the line a file
    must be in one tier (unit, or what its module-level pytestmark says)."""
    if line is None:
        return f"tests in {sorted(tiers)} but no '# Tier:' line at the top" if len(tiers) > 1 else None
    named = set(re.findall(r"\b(" + "|".join(TIERS) + r")\b", line.split("(")[0]))
    if not named or not tiers <= named or (len(named) == 1 and tiers != named):
        return f"{line!r} but its tests are in {sorted(tiers)}"
    return None


def test_each_files_tier_line_names_the_tiers_of_its_tests(request):
    by_file: dict[Path, set[str]] = {}
    for item in request.session.items:
        tier = next(t for t in TIERS if item.get_closest_marker(t) is not None)
        by_file.setdefault(Path(item.path), set()).add(tier)
    wrong = []
    for path, tiers in sorted(by_file.items()):
        line = next((s for s in path.read_text().splitlines()[:20] if s.startswith("# Tier:")), None)
        if (problem := tier_line_problem(line, tiers)) is not None:
            wrong.append(f"{path.name}: {problem}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("line, tiers, ok", [
    ("# Tier: unit.", {"unit"}, True),
    ("# Tier: unit.", {"unit", "integration"}, False),
    ("# Tier: integration.", {"unit"}, False),
    ("# Tier: integration (subprocesses; the unit of work is a run).", {"integration"}, True),
    ("# Tier: unit, except the tests marked integration (sockets).", {"unit", "integration"}, True),
    ("# Tier: unit, except the tests marked integration (sockets).", {"unit"}, True),
    ("# Tier: unit, except the tests marked integration (sockets).", {"unit", "device"}, False),
    ("# Tier: fast.", {"unit"}, False),
    (None, {"integration"}, True),
    (None, {"unit", "integration"}, False),
])
def test_the_tier_line_check_can_fail(line, tiers, ok):
    assert (tier_line_problem(line, tiers) is None) == ok
