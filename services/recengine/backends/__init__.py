"""Production backends behind the store interfaces: Kafka, MongoDB (GridFS), Redis.

Imported only when a URL names them, so the embedded defaults need none of their clients.
"""
