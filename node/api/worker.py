"""The app of one uvicorn worker process (``qnode serve --workers N``, N > 1).

uvicorn starts each worker from an import string, so the config file and the keystore password
reach it through the environment that ``qnode serve`` sets for its children; the settings are
then loaded once per worker and passed in explicitly, as everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from node.api.app import create_app
from node.keys import PASSWORD_ENV
from node.runtime import Node
from node.settings import load_settings

CONFIG_ENV = "QNODE_SERVE_CONFIG"


def app() -> FastAPI:
    settings = load_settings(Path(os.environ[CONFIG_ENV]))
    password = os.environ.get(PASSWORD_ENV, "")
    return create_app(settings, lambda: Node.open(settings, password))
