"""The metadata index: repositories, tags, manifests, blob links, uploads."""

from ociregistry.metadata.store import MetadataStore

__all__ = ["MetadataStore"]
