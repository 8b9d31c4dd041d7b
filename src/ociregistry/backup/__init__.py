"""Backup and restore of the embedded default (SQLite + filesystem), and the
backup lease that other deployments hold around their own database dump and
bucket copy. See docs/backup.md."""
