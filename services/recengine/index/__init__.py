"""The faiss index service."""
