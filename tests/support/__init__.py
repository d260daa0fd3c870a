"""Test support: real servers for integration tests (see servers.py and fixtures.py).

``tests/conftest.py`` pulls the fixtures in with (``tests/`` is on sys.path there)::

    from support.fixtures import *  # noqa: F403
"""
