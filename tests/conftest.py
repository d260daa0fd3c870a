"""The shared fixtures live in the ``support`` package (``tests/`` is on sys.path here)."""

pytest_plugins = [
    "support.fixtures",  # the real servers: kafka, mongo, redis_server, graphite and their URLs
    "support.engine",  # engine (a trained data directory) and services (gunicorn on it)
]
