"""Storage lifecycle: rules over tags and what the registry keeps (no Flask here).

tag_rules.py: immutable and protected tags; tag_history.py: every tag change
recorded, and restores within a window.
"""
