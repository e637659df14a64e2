from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.trace.world import World, build_world


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("trace-world"))
    try:
        yield built
    finally:
        built.close()
