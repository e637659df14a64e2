from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.resilience.world import ResilienceWorld, build_world


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResilienceWorld]:
    built = build_world(tmp_path_factory.mktemp("resilience-world"))
    yield built
    built.close()
