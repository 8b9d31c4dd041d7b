"""deploy/nginx/registry.conf passes `nginx -t`, as shipped and with its TLS example
uncommented, and proxies as the registry needs (streaming, no affinity).
"""

from __future__ import annotations

import datetime
import re
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.support import (
    NGINX_CONF,
    NGINX_DEBIAN_CONF,
    TLS_BEGIN,
    TLS_END,
    debian_nginx_copy,
    tool,
    upstream_hosts,
)

# -- nginx --------------------------------------------------------------------------




def _resolvable(text: str) -> str:
    """The compose service names resolve only inside its network: use loopback ports."""
    hosts = upstream_hosts(text)
    for number, host in enumerate(hosts):
        pattern = rf"(\bserver\s+){re.escape(host)}:5000\b"
        text = re.sub(pattern, rf"\g<1>127.0.0.1:{50001 + number}", text)
    return text


def _split_tls_example(text: str) -> tuple[str, str]:
    """(the file without the TLS example, the example uncommented)."""
    head, rest = text.split(TLS_BEGIN, 1)
    block, _tail = rest.split(TLS_END, 1)
    lines = []
    for line in block.splitlines()[1:]:
        if line.startswith("# "):
            lines.append(line[2:])
        elif line == "#":
            lines.append("")
        else:
            assert line.startswith("##") or not line.strip(), f"stray line in the example: {line}"
    return head, "\n".join(lines) + "\n"


def _nginx_test(site: str, tmp_path: Path) -> None:
    """`nginx -t` on the site inside a minimal main configuration of our own."""
    nginx = tool("nginx", "nginx")
    (tmp_path / "site.conf").write_text(site)
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\n"
        "error_log stderr;\n"
        "events {}\n"
        "http {\n"
        f"    client_body_temp_path {tmp_path}/body;\n"
        f"    proxy_temp_path {tmp_path}/proxy;\n"
        f"    fastcgi_temp_path {tmp_path}/fastcgi;\n"
        f"    uwsgi_temp_path {tmp_path}/uwsgi;\n"
        f"    scgi_temp_path {tmp_path}/scgi;\n"
        "    access_log off;\n"
        f"    include {tmp_path}/site.conf;\n"
        "}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", "stderr", "-c", str(main)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test is successful" in result.stderr, result.stderr


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_file, key_file


def _server_blocks(text: str) -> list[str]:
    """The bodies of the top-level server { } blocks (nginx comments removed)."""
    text = re.sub(r"#[^\n]*", "", text)
    blocks, depth, start = [], 0, None
    for match in re.finditer(r"\bserver\s*\{|\{|\}", text):
        token = match.group(0)
        if token != "}":
            if depth == 0 and token.startswith("server"):
                start = match.end()
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start is not None:
                blocks.append(text[start:match.start()])
                start = None
    return blocks


def _proxying(block: str) -> list[str]:
    """The directives that decide how requests are passed on, normalised."""
    return sorted(
        " ".join(line.split())
        for line in block.splitlines()
        if re.match(r"\s*(proxy_|client_|send_timeout|large_client_header_buffers|location|return)",
                    line)
    )


def test_nginx_config_as_shipped_passes_nginx_t(tmp_path):
    _nginx_test(_resolvable(NGINX_CONF.read_text()), tmp_path)


def test_nginx_tls_example_passes_nginx_t(tmp_path):
    cert, key = _self_signed(tmp_path)
    head, example = _split_tls_example(_resolvable(NGINX_CONF.read_text()))
    assert "listen 443 ssl" in example
    example = (example.replace("/etc/nginx/tls/tls.crt", str(cert))
               .replace("/etc/nginx/tls/tls.key", str(key)))
    _nginx_test(head + example, tmp_path)


def test_nginx_tls_example_proxies_like_the_plain_server():
    head, example = _split_tls_example(NGINX_CONF.read_text())
    (plain,) = _server_blocks(head)
    tls = next(block for block in _server_blocks(example) if "listen 443" in block)
    assert _proxying(tls) == _proxying(plain)


def test_nginx_streams_bodies_and_balances_without_affinity():
    text = re.sub(r"#[^\n]*", "", NGINX_CONF.read_text())
    (plain,) = _server_blocks(text)
    for directive in (
        "client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;",
        "proxy_http_version 1.1;", 'proxy_set_header Connection "";',
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $http_host;",
    ):
        assert directive in plain, directive
    assert re.search(r"proxy_read_timeout\s+(\d+)s;", plain)
    assert int(re.search(r"proxy_read_timeout\s+(\d+)s;", plain).group(1)) >= 300
    upstream = re.search(r"upstream\s+ociregistry\s*\{(.*?)\}", text, re.S).group(1)
    assert re.search(r"^\s*keepalive\s+\d+;", upstream, re.M)
    assert not re.search(r"^\s*(ip_hash|hash|sticky|least_conn|random)\b", upstream, re.M)
    assert len(upstream_hosts(text)) >= 2


# -- Debian's nginx -----------------------------------------------------------------


def _debian_nginx_test(site: str, tmp_path: Path) -> None:
    """`nginx -t` with the site dropped into conf.d of Debian's own configuration."""
    nginx = tool("nginx", "nginx")
    main = debian_nginx_copy(tmp_path)
    (main.parent / "conf.d" / "ociregistry.conf").write_text(site)
    result = subprocess.run(
        [nginx, "-t", "-c", str(main), "-e", str(tmp_path / "log" / "error.log")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test is successful" in result.stderr, result.stderr


def test_debian_conf_drops_into_debians_conf_d_beside_the_default_site(tmp_path):
    _debian_nginx_test(NGINX_DEBIAN_CONF.read_text(), tmp_path)
    sites = (tmp_path / "etc-nginx" / "sites-enabled" / "default").read_text()
    assert re.search(r"listen 80 default_server;", sites), "Debian's default site is gone"
    # As documented: loopback instances, a port of its own, never port 80 by default.
    text = re.sub(r"#[^\n]*", "", NGINX_DEBIAN_CONF.read_text())
    assert re.findall(r"^\s*server\s+(127\.0\.0\.1:\d+)", text, re.M) == [
        "127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003"]
    (plain,) = _server_blocks(text)
    assert re.findall(r"^\s*listen\s+([^;]+);", plain, re.M) == ["5000"]


def test_debian_tls_example_passes_nginx_t(tmp_path):
    cert, key = _self_signed(tmp_path)
    head, example = _split_tls_example(NGINX_DEBIAN_CONF.read_text())
    example = (example.replace("/etc/ssl/registry/fullchain.pem", str(cert))
               .replace("/etc/ssl/registry/privkey.pem", str(key)))
    _debian_nginx_test(head + example, tmp_path)


def test_debian_conf_proxies_like_the_compose_one():
    """Same streaming, timeouts and retries: only the upstreams and the port differ."""
    for tls in (False, True):
        proxying = []
        for path in (NGINX_CONF, NGINX_DEBIAN_CONF):
            head, example = _split_tls_example(path.read_text())
            blocks = _server_blocks(example if tls else head)
            proxying.append(_proxying(next(b for b in blocks if "proxy_pass" in b)))
        assert proxying[0] == proxying[1]


def test_a_refused_connection_is_retried_on_the_next_instance():
    """A rolling restart: the instance being restarted refuses connections meanwhile."""
    for path in (NGINX_CONF, NGINX_DEBIAN_CONF):
        text = re.sub(r"#[^\n]*", "", path.read_text())
        (plain,) = _server_blocks(text)
        assert re.search(r"proxy_next_upstream\s+error\b", plain), path
        tries = int(re.search(r"proxy_next_upstream_tries\s+(\d+);", plain).group(1))
        assert tries >= 2, path
