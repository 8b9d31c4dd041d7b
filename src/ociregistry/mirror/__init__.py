"""Pull-through cache of upstream registries (docs/mirror.md).

- settings.py: the ``mirror`` configuration section (upstreams).
- routing.py: which upstream and which local repository a /v2 request means
  (path prefix, containerd's ``?ns=``, the default upstream of bare names).
- upstream.py: the HTTP client of one upstream (TLS, mTLS, timeouts, caps,
  redirects only to allowed hosts); auth.py: its anonymous/basic/Bearer auth.
- service.py: manifests and blobs through the cache: freshness (tag TTL, HEAD
  revalidation), fills (stream-through, single-flight leases), stale serving.
"""
