"""Pieces shared by the services: Redis-backed job records, the bridge cache, job submission (gateway and
analyzer), Redis key names, and the bounded ASGI body reader (gateway and worker guard)."""
