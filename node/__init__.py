"""qnode: a consortium member's quality-traceability node."""

__version__ = "0.1.0"
