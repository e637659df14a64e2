"""The trace query: from a serial to its whole upstream genealogy across members, with every
anomaly on the path and the ranked root-cause candidates, each fact verified against the chain.

Public names:

- :func:`open_tracer` (a :class:`Tracer` for a member's :class:`~node.runtime.Node`) and
  :func:`trace` (one trace with it); :class:`TraceOptions`;
- the result, :class:`~node.trace.model.Trace` (nodes, anomalies, symptoms, candidates, members,
  notes, time taken) and its JSON, :func:`~node.trace.model.trace_json` (``qnode-trace/1``);
- what a member serves to the traces of others: :class:`~node.trace.part.PartReader`, behind the
  verifier API's ``/api/v1/trace/links`` and ``/api/v1/trace/anomalies``
  (:mod:`node.api.trace_routes`);
- the drift detector, :func:`~node.trace.drift.detect` (:mod:`node.trace.drift` says how it
  works), and the ranking (:mod:`node.trace.ranking`).

Modules: ``keys`` (identifiers, equipment and devices), ``index`` (the trace index, migration
0004), ``anomalies`` (what counts as one), ``drift``, ``bundles`` (proofs of many records),
``part`` (a member's answers), ``peers`` (asking other members), ``tracer`` (the walk and the
verification), ``ranking``, ``model`` (the result), ``render`` (text and a graph of a trace).

Credentials: a member serves its trace routes to bearer tokens of the legitimate-interest tier or
above (``[[api.tokens]]`` on its node). The tracing node holds one token per member it asks
(``tokens``: member address -> token; ``qnode trace --tokens FILE``).
"""

from __future__ import annotations

from collections.abc import Mapping

from node.api.passport import Ownership
from node.api.verification import ChainView
from node.runtime import Node
from node.trace.drift import DriftSettings
from node.trace.index import TraceIndex
from node.trace.model import Trace, trace_json
from node.trace.part import PartReader
from node.trace.peers import HttpPartSource
from node.trace.tracer import ChainHolds, TraceOptions, Tracer

__all__ = [
    "DriftSettings",
    "Trace",
    "TraceOptions",
    "Tracer",
    "open_tracer",
    "trace",
    "trace_json",
]


def open_tracer(
    node: Node,
    tokens: Mapping[str, str] | None = None,
    options: TraceOptions | None = None,
    endpoints: Mapping[str, str] | None = None,
) -> Tracer:
    """A tracer for ``node``'s member: its own store in-process, other members through their
    nodes (``endpoints`` overrides the endpoints registered on-chain, e.g. for a proxy)."""
    settings = node.settings
    store = node.store()
    lines = {name: line.uri for name, line in settings.control.lines.items()}
    ownership = Ownership(settings, node.address)
    options = options or TraceOptions()
    reader = PartReader(
        store, node.address, TraceIndex(store, lines), ownership, drift=options.drift
    )
    chain = ChainView(node.anchor_registry, node.quality_ledger, node.consortium)
    peers = HttpPartSource(chain, tokens, settings.api.peer_timeout_s, endpoints)
    holds = ChainHolds(node.supplier_quality, node.corrective_action)
    return Tracer(node.address, reader, chain, ownership, peers, options, holds)


def trace(
    node: Node,
    serial_uri: str,
    tokens: Mapping[str, str] | None = None,
    options: TraceOptions | None = None,
) -> Trace:
    """Trace ``serial_uri`` (a GS1 Digital Link URI) for ``node``'s member."""
    tracer = open_tracer(node, tokens, options)
    try:
        return tracer.trace(serial_uri)
    finally:
        tracer.close()
