from tests.cluster.pg import pg_url, postgres  # noqa: F401  (fixtures)
from tests.cluster.s3 import s3_bucket, seaweedfs  # noqa: F401
from tests.cluster.topology import cluster, make_cluster  # noqa: F401
