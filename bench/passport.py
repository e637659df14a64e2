"""Passport requests/s and p50/p99 latency, with proofs, against `qnode serve`'s app on loopback.

A child process builds a small consortium (tests/api/world.py: an embedded chain, three members,
every passport record type, anchored and attested, one supplier part fetched from the supplier's
own API and verified) and serves the manufacturer's API with uvicorn (uvloop, httptools) on a
free loopback port. This process is the load: asyncio over keep-alive connections, one request in
flight per connection, the time from writing a request to reading its whole response measured.

Rounds, same server, same run:
- baseline: ``GET /api/v1/health`` (the same app, rate limiter and middleware; no passport);
- passport: ``GET /01/{gtin}/10/{lot}/21/{serial}`` as JSON, each value's verification status
  (Merkle proof against the on-chain root, EIP-712 signature on QualityLedger) included, for the
  public and the authority tier in turn; passports are cached once verified and dropped when
  their records, anchors or attestations change;
- cold: the first passport request after the cache is emptied (build and verification).

Run: ``.venv/bin/python bench/passport.py [--seconds 5] [--connections 16]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def serve(conn: Connection, port: int) -> None:
    import uvicorn

    from node.api import create_app
    from tests.api.world import TOKENS, build_world

    world = build_world(Path(tempfile.mkdtemp(prefix="qnode-bench-")))
    unlimited = {"requests_per_s": 1e9, "burst": 10**9, "misses_per_min": 1e9, "miss_burst": 10**9}
    values = world.aster_settings.model_dump(mode="json")
    values["api"] = {**values["api"], "rate_limit": unlimited, "refresh_interval_s": 0.5}
    from node.settings import settings_from_values

    settings = settings_from_values(values)
    app = create_app(settings, lambda: world.aster)
    conn.send(
        {
            "paths": [world.item_path(), world.item_path(world.serial_pending)],
            "token": TOKENS["authority"],
        }
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[bytes] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        length = (
            int(
                head[
                    start + 15 : head.find(b"\r\n", start)
                    if head.find(b"\r\n", start) > 0
                    else len(head)
                ]
            )
            if start >= 0
            else 0
        )
        total = end + 4 + length
        if len(self.buffer) >= total:
            response = bytes(self.buffer[:total])
            del self.buffer[:total]
            waiter, self.waiter = self.waiter, None
            waiter.set_result(response)

    async def request(self, raw: bytes) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return await self.waiter


async def _load(
    port: int, requests: list[bytes], seconds: float, connections: int
) -> tuple[int, list[float], int]:
    loop = asyncio.get_running_loop()
    clients = [
        (await loop.create_connection(_Client, "127.0.0.1", port))[1] for _ in range(connections)
    ]
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def run(client: _Client, offset: int) -> None:
        nonlocal errors
        index = offset
        while time.perf_counter() < deadline:
            raw = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            response = await client.request(raw)
            latencies.append(time.perf_counter() - started)
            if not response.startswith(b"HTTP/1.1 200"):
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(run(c, i) for i, c in enumerate(clients)))
    elapsed = time.perf_counter() - started
    for client in clients:
        assert client.transport is not None
        client.transport.close()
    return int(len(latencies) / elapsed), latencies, errors


def _request(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n{auth}\r\n"
    ).encode()


def _round(name: str, port: int, requests: list[bytes], seconds: float, connections: int) -> None:
    import uvloop

    rate, latencies, errors = uvloop.run(_load(port, requests, seconds, connections))
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"{name:<44} {rate:>7,} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
        f"   ({len(latencies):,} requests, {errors} not 200)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    from node.chain.localnode import free_port

    port = free_port()
    receiver, sender = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.get_context("spawn").Process(
        target=serve, args=(sender, port), daemon=True
    )
    server.start()
    try:
        info = receiver.recv()
        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        paths, token = info["paths"], info["token"]
        cold = []
        for path in paths:
            started = time.perf_counter()
            response = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=30)
            cold.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            summary = response.json()["summary"]
        print(
            f"server: 1 uvicorn worker (uvloop, httptools); load: this process, "
            f"{args.connections} keep-alive connections, {args.seconds:.0f} s a round"
        )
        print(f"passport values: {summary}")
        print(
            f"cold passport (build + chain verification): {', '.join(f'{c:.1f} ms' for c in cold)}"
        )
        _round(
            "baseline GET /api/v1/health",
            port,
            [_request("/api/v1/health")],
            args.seconds,
            args.connections,
        )
        _round(
            "passport JSON with proofs, public tier",
            port,
            [_request(p) for p in paths],
            args.seconds,
            args.connections,
        )
        _round(
            "passport JSON with proofs, authority tier",
            port,
            [_request(p, token) for p in paths],
            args.seconds,
            args.connections,
        )
        _round("baseline again", port, [_request("/api/v1/health")], args.seconds, args.connections)
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
