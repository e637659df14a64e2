from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.world import World


def test_smoke(world: World) -> None:
    with TestClient(world.aster_app()) as client:
        response = client.get(world.item_path())
        print(response.status_code, response.text[:3000])
        assert response.status_code == 200
