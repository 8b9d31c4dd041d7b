"""Storage lifecycle: pull statistics, retention policies, label expiry (no Flask here).

Rules live here; their SQL in metadata/*_queries.py; their HTTP in web/api/ and web/ui/.
"""
