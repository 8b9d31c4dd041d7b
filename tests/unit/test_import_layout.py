"""The importer on hand-made Distribution layouts: the odd files a real store can hold.

(tests/clients/test_import_distribution.py runs it on what Distribution itself wrote.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ociregistry.config import load_settings
from ociregistry.importer.distribution import DistributionImporter
from ociregistry.importer.sources import FilesystemSource, SourceError
from ociregistry.runtime import build_runtime
from tests.distribution import Store, digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture
def runtime(tmp_path: Path):
    rt = build_runtime(load_settings(None, {"data_dir": str(tmp_path / "data")}), migrate=True)
    yield rt
    rt.metadata.dispose()


def run(runtime, root: Path):
    return DistributionImporter(runtime.registry, FilesystemSource(str(root)), jobs=2).run()


def test_not_a_distribution_root_is_refused(tmp_path: Path):
    with pytest.raises(SourceError):
        FilesystemSource(str(tmp_path))


def test_odd_files_are_reported_and_the_rest_imported(runtime, tmp_path: Path):
    store = Store(tmp_path / "dist")
    good, payload = store.image("team/app", "v1", "good")
    # a revision whose stored bytes are not what its digest says
    wrong = store.blob(b'{"schemaVersion": 2}')
    forged = "sha256:" + "ab" * 32
    store.put(f"blobs/sha256/ab/{forged[7:]}/data", payload)
    store.put(f"repositories/team/app/_manifests/revisions/sha256/{forged[7:]}/link",
              forged.encode())
    store.put("repositories/team/app/_manifests/tags/forged/current/link", forged.encode())
    store.put("repositories/team/app/_manifests/tags/nowhere/current/link",
              ("sha256:" + "cd" * 32).encode())  # no revision link for it
    store.put("repositories/team/app/_manifests/tags/text/current/link", b"not a digest")
    store.put("repositories/team/app/_layers/sha256/nothex/link", b"x")
    store.put(f"repositories/team/app/_manifests/revisions/sha256/{wrong[7:]}/link", b"")
    store.put("repositories/Bad..Name/_layers/sha256/00/link", b"x")
    store.put("repositories/team/app/_uploads/u1/data", b"in progress")
    # A signature link as Distribution before 2.3 kept them: not a revision.
    store.put(f"repositories/team/app/_manifests/revisions/sha256/{good[7:]}/signatures/"
              f"sha256/{'12' * 32}/link", b"sha256:" + b"12" * 32)

    stats = run(runtime, store.root)
    kinds = sorted(p.kind for p in stats.problems)
    assert kinds == ["bad-link", "bad-link", "dangling-tag", "empty-link", "invalid-name",
                     "tag-skipped", "unreadable-manifest"], stats.problems
    assert stats.manifests_imported == 1 and stats.tags_imported == 1
    row = runtime.metadata.get_manifest("team/app", "v1", False)
    assert row is not None and row.digest == good and row.payload == payload
    assert runtime.metadata.get_manifest("team/app", forged, True) is None


def test_an_index_goes_in_after_its_children_and_not_without_them(runtime, tmp_path: Path):
    store = Store(tmp_path / "dist")
    a, a_bytes = store.image("team/multi", None, "a")
    b, b_bytes = store.image("team/multi", None, "b")
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(x)}
                                      for d, x in ((a, a_bytes), (b, b_bytes))]}).encode()
    i = store.blob(index)
    store.put(f"repositories/team/multi/_manifests/revisions/sha256/{i[7:]}/link", i.encode())
    store.put("repositories/team/multi/_manifests/tags/m/current/link", i.encode())
    # b's layer is gone from the store: b can't come in, so neither can the index.
    layer_b = digest(b"layer b")
    (store.v2 / f"blobs/sha256/{layer_b[7:9]}/{layer_b[7:]}/data").unlink()

    stats = run(runtime, store.root)
    assert stats.manifests_imported == 1  # a only
    assert runtime.metadata.get_manifest("team/multi", i, True) is None
    assert {p.kind for p in stats.problems} >= {"missing-blob", "manifest-refused", "tag-skipped"}

    # The blob turns up (restored from a backup): the next run completes the index.
    store.blob(b"layer b")
    again = run(runtime, store.root)
    assert again.manifests_imported == 2 and again.tags_imported == 1
    assert again.manifests_present == 1 and again.blobs_copied == 1
    assert runtime.metadata.get_manifest("team/multi", "m", False).digest == i


def test_link_mode_shares_the_files_and_still_checks_digests(runtime, tmp_path: Path):
    store = Store(tmp_path / "dist")
    good, _payload = store.image("team/app", "v1", "linked")
    rotten, _ = store.image("team/rot", "v1", "rotten")
    layer = digest(b"layer rotten")
    source_file = store.v2 / f"blobs/sha256/{layer[7:9]}/{layer[7:]}/data"
    source_file.write_bytes(b"layer rotteN")  # same size, other bytes

    stats = DistributionImporter(runtime.registry, FilesystemSource(str(store.root)),
                                 link=True).run()
    assert stats.blobs_copied == 0 and stats.blobs_linked == 3  # 2 of app, rot's config
    assert [p.kind for p in stats.problems] == ["corrupt-blob", "manifest-refused",
                                                "tag-skipped"]
    assert runtime.metadata.get_manifest("team/app", "v1", False).digest == good
    assert runtime.metadata.get_manifest("team/rot", rotten, True) is None
    config = digest(b'{"salt":"linked"}')
    ours = Path(runtime.storage.blob_path(config))
    theirs = store.v2 / f"blobs/sha256/{config[7:9]}/{config[7:]}/data"
    assert ours.stat().st_ino == theirs.stat().st_ino  # one file, two names
    # The rotten file is left where it was; nothing of it stays here.
    assert source_file.read_bytes() == b"layer rotteN"
    assert not runtime.storage.blob_exists(layer)
    assert list(runtime.storage.list_uploads()) == []
    assert not list((tmp_path / "data" / "uploads").iterdir())


def test_a_run_whose_figures_stop_moving_is_stalled(runtime, tmp_path: Path):
    from ociregistry.importer.status import ImportRecorder, ImportRuns
    from ociregistry.metadata import schema as t

    store = Store(tmp_path / "dist")
    store.image("team/app", "v1", "s")
    recorder = ImportRecorder(runtime.metadata, str(store.root))
    stats = DistributionImporter(runtime.registry, FilesystemSource(str(store.root)),
                                 progress=recorder).run()
    runs = ImportRuns(runtime.metadata)
    assert runs.page(10, None)[0]["state"] == "running"
    with runtime.metadata.write() as conn:  # the process died long ago
        conn.execute(t.import_runs.update().values(updated_at=0.0))
    assert runs.page(10, None)[0]["state"] == "stalled"
    recorder.finish(stats)
    run = runs.get(recorder.run_id)
    assert run["state"] == "finished" and run["stats"]["manifests_imported"] == 1
    assert run["problems"] == []


def test_a_blob_over_this_registrys_limit_is_refused_not_fatal(tmp_path: Path):
    settings = load_settings(None, {"data_dir": str(tmp_path / "data"),
                                    "limits": {"max_blob_size": 12}})
    runtime = build_runtime(settings, migrate=True)
    try:
        store = Store(tmp_path / "dist")
        store.image("team/app", "v1", "big")  # a 17-byte config, a 9-byte layer
        stats = run(runtime, store.root)
        kinds = [p.kind for p in stats.problems]
        assert kinds == ["blob-refused", "manifest-refused", "tag-skipped"], stats.problems
        assert "SIZE_INVALID" in stats.problems[0].detail
        assert stats.blobs_copied == 1 and stats.manifests_imported == 0
    finally:
        runtime.metadata.dispose()
