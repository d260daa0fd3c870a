"""Every backend behind the interfaces: the embedded ones (files, SQLite, memory) and the
production ones (Kafka, MongoDB/GridFS, Redis, statsd).

:mod:`recengine.backends.registry` builds them from URLs and is the only module that names
them; an implementation module is imported only when a URL's scheme selects it, so the
embedded defaults need none of the production clients.
"""
