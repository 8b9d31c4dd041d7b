"""gunicorn's master (Arbiter), plus the processes an instance runs beside its workers.

A companion (today ``events.process.DeliveryProcess``) is started and restarted from
the master's loop (each pass of ``manage_workers``, at least once a second and at
once after a child exits), reaped before gunicorn's own loop over every exited
child (which would otherwise count it as a worker), and stopped with the workers:
SIGTERM first, then the workers' stop, then a bounded wait and SIGKILL.
"""

from __future__ import annotations

from typing import Any, Protocol

from gunicorn.arbiter import Arbiter


class Companion(Protocol):
    def ensure(self, arbiter: Any) -> None: ...
    def reap(self) -> None: ...
    def terminate(self) -> None: ...
    def wait(self) -> None: ...


class RegistryArbiter(Arbiter):  # type: ignore[misc]
    def __init__(self, app: Any, companions: list[Companion]) -> None:
        self.companions = companions
        super().__init__(app)

    def manage_workers(self) -> None:
        super().manage_workers()
        for companion in self.companions:
            companion.ensure(self)

    def reap_workers(self) -> None:
        # (runs in the SIGCHLD handler: the companions' reap never raises)
        for companion in self.companions:
            companion.reap()
        super().reap_workers()

    def stop(self, graceful: bool = True) -> None:
        for companion in self.companions:
            companion.terminate()
        super().stop(graceful)
        for companion in self.companions:
            companion.wait()
