from tests.cluster.pg import pg_url, postgres  # noqa: F401  (fixtures)
