"""A blob GET/HEAD from a local file, answered without werkzeug's ``send_file``.

``send_file`` guesses names, builds its headers through several descriptor layers
and parses the request's conditional and Range headers: about a third of a blob
HEAD's CPU. A request with none of those headers (the common pull: no Range, no
If-*) gets the same answer built directly: the same headers in the same order,
the same values (Content-Disposition from the file name, Last-Modified from its
mtime, Expires a year from now, Date), the body through the server's
``wsgi.file_wrapper`` (sendfile). Anything else goes to ``send_file`` as before.
tests/api/test_blob_responses.py compares the two answers header by header.
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import Response
from werkzeug.http import http_date
from werkzeug.wsgi import wrap_file

from ociregistry.storage.write_gate import opened_for_pull

MAX_AGE = 31536000  # a blob never changes: a year, as send_file was told
# Request headers that make send_file's answer depend on more than the file.
_CONDITIONAL = ("HTTP_RANGE", "HTTP_IF_RANGE", "HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH",
                "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE")


def plain(environ: dict[str, Any]) -> bool:
    """True when the request asks for the whole blob, unconditionally."""
    return not any(key in environ for key in _CONDITIONAL)


def plain_headers(path: str, stat: os.stat_result, digest: str) -> list[tuple[str, str]]:
    """The headers of ``send_file``'s 200 for a plain request, in its order."""
    now = time.time()
    return [
        ("Content-Disposition", f"inline; filename={os.path.basename(path)}"),
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(stat.st_size)),
        ("Last-Modified", http_date(stat.st_mtime)),
        ("Cache-Control", f"public, max-age={MAX_AGE}"),
        ("Expires", http_date(int(now + MAX_AGE))),
        ("ETag", f'"{digest}"'),
        ("Date", http_date(now)),
        ("Accept-Ranges", "bytes"),
    ]


def file_response(environ: dict[str, Any], path: str, digest: str, storage: Any = None
                  ) -> Response:
    """``send_file(path, mimetype="application/octet-stream", etag=digest,
    conditional=True, max_age=MAX_AGE)`` for a ``plain`` request.

    Raises FileNotFoundError as send_file does when the file is gone.
    """
    stat = os.stat(path)
    body: Any = None
    if environ.get("REQUEST_METHOD") != "HEAD":  # send_file opened it for a HEAD too
        # Closed by the server; a large blob's GET keeps read-backs off the disk meanwhile.
        body = wrap_file(environ, opened_for_pull(storage, path, stat.st_size))
    return Response(body, direct_passthrough=True, headers=plain_headers(path, stat, digest))
