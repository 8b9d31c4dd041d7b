"""Administration behind /api/v1/admin: users and groups, robot tokens, GC runs.

No Flask here. It sits above ``core`` and ``auth`` (it manages the htpasswd
file, robot tokens and GC jobs through them); the web layer calls it.
"""
