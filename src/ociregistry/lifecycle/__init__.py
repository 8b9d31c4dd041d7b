"""Storage lifecycle: what the registry keeps, and for how long (no Flask here).

tag_rules.py: immutable and protected tags; tag_history.py: every tag change
recorded, and restores within a window; pull_stats.py: when each tag and
manifest was last pulled; policy.py, plan.py, retention.py, schedule.py:
retention policies and label expiry; quotas.py: namespace quotas. Their SQL
lives in metadata/*_queries.py, their HTTP in web/api/ and web/ui/.
"""
