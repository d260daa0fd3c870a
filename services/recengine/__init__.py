"""recengine: a real-time recommendation engine (incremental GMF trainer, faiss index, API)."""

__version__ = "0.1.0"
