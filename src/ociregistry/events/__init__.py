"""Events: webhooks from a transactional outbox, signed, retried, visible (docs/events.md).

- model.py     the event: its stamp (id, time, actor, instance) and its dict form
- formats.py   plain JSON, CloudEvents 1.0, the Distribution envelope; Standard Webhooks
               signatures
- filters.py   endpoint specs: validation, filters, secrets
- pulls.py     manifest pulls, buffered and written in batches (never on the request)
- delivery.py  the delivery worker: one lease per endpoint across the cluster
- process.py   the delivery process (one per instance, beside the gunicorn workers)
- bodies.py    events parsed once and rendered once per format, shared by the senders
- sessions.py  the senders' HTTP: kept-alive connections, the environment read once
- service.py   endpoint management for the API, the UI and the configuration file

Other capabilities emit an event inside their own write transaction with
``store.events.emit(conn, action, repository=..., digest=..., tags=..., **details)``
(metadata/event_outbox.py): it is written if and only if that transaction commits.
No Flask here.
"""
