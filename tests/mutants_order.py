"""Issue 11 mutation proof: the pytest plugin `make mutate` loads (`-p tests.mutants_order`).

mutmut runs each mutant's tests fastest first and stops at the first failure, so a mutant that a
pure sizing test kills costs milliseconds. pytest-django re-sorts every run to put the database
tests first, which made each mutant start a test database and the engine tests before the pure
ones (8-18 s a mutant instead of 1-3 s). This hook, run after pytest-django's, puts the tests back
in the order they were named on the command line. It only acts when tests are named one by one
(mutmut's per-mutant runs); a normal run names directories and files, and is left as it is. It
holds no tests and is inert unless loaded with `-p` (a test module's hooks are not registered).
"""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    named = {arg: i for i, arg in enumerate(config.args) if "::" in arg}
    if not named:
        return
    items.sort(key=lambda item: named.get(item.nodeid, len(named)))
