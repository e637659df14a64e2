from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api.world import World, build_world


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("api-world"))
    try:
        yield built
    finally:
        built.server.should_exit = True
        built.aster.close()
        built.borealis.close()
