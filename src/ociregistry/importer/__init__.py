"""Moving in from another registry's store: CNCF Distribution (registry:2).

``sources`` reads a Distribution store on a filesystem or in S3 as it lies
(link files and blob data, never through its HTTP API); ``distribution``
indexes what it finds into this registry through the core's ordinary paths
(uploads for blobs, ``Registry.put_manifest`` for manifests and tags), so every
digest is checked and nothing is visible before it is whole. No Flask here.
"""
