"""Everything the tests share; ``tests/`` is on sys.path, so modules import as ``support.*``.

Fixtures (pytest plugins, listed in ``tests/conftest.py``'s ``pytest_plugins``):

* ``fixtures``   the real servers, started on first use: ``kafka``, ``mongo``, ``redis_server``,
  ``graphite`` and their ``*_url`` fixtures.
* ``engine``     ``engine`` (a trained data directory) and ``services`` (gunicorn on it).

Helpers:

* ``servers/``   the server processes (one module per server; ``python -m support.servers``).
* ``k8s``        a Kubernetes control plane on 127.0.0.1 (etcd, apiserver, kwok).
* ``net``        free ports, one-shot TCP requests, HTTP GETs.
* ``waiting``    ``wait_until`` a condition holds; ``wait_for_probe`` a starting server answers.
* ``streams``    producing to and counting Kafka topics.
* ``gunicorn``   the index service and the API under gunicorn on free ports.
* ``api``        the recommender API as clients use it (waiting for a user's answer).
* ``event_lines``      random and malformed JSON event lines (decoder tests).
* ``planted_catalog``  a small embedding version with known answers (app tests).
* ``kube_objects``     plain-dict Deployments, manifests and specs (operator tests).
* ``knn_reference``    reference recall@10 of two simple rankers (generator tests).
* ``learning``         settings of a small, fully evaluated learner (learner tests).
"""
