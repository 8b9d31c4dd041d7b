"""python-docker-registry: an OCI Distribution v1.1 registry on Flask."""

__version__ = "0.1.0"
