"""`ociregistry serve` sets up prometheus' multiprocess directory before anything
imports prometheus_client; a command module that loads the core (and so the metrics)
at import time would leave every worker's counters out of /metrics."""

import subprocess
import sys


def test_the_cli_does_not_load_prometheus_client_before_serve_sets_it_up() -> None:
    code = "import sys, ociregistry.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
