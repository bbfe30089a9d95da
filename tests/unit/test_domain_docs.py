"""Each domain documents itself: docs/domains/ is rendered from the plug-ins and must be current."""
from __future__ import annotations

from schemas.registry import domains
from schemas.thresholds import load_plan
from smartcity.domaindocs import outputs, pages, write


def test_docs_are_current() -> None:
    stale = write(check=True)
    assert not stale, f"run `smartcity docs` and commit: stale {', '.join(p.name for p in stale)}"


def test_every_domain_has_a_page_that_names_what_it_writes() -> None:
    rendered = {p.stem: text for p, text in pages().items()}
    plan = load_plan()
    for name in domains():
        shapes, indicators, rules = outputs(name, plan)
        assert shapes and rules, f"the sample day of {name} produced nothing to document"
        for measurement in shapes:
            assert f"`{measurement}`" in rendered[name]
        assert f"`{name}.offline`" in rendered[name]
