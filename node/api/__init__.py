"""The node's verifier API: a GS1 Digital Link resolver serving verified product passports.

``create_app(settings, node_factory)`` builds the FastAPI app (see :mod:`node.api.app`);
``qnode serve -c CONFIG`` runs it with uvicorn on loopback by default.
"""

from node.api.app import create_app

__all__ = ["create_app"]
