"""The catalog's reads made on the driver itself (one run by id, runs by id, a model's page) fail like its other
reads when the database is out: a :class:`BackendError` naming the catalog, and they work again by themselves."""

from __future__ import annotations

from typing import Any

import pytest

from keel.catalog import SqlCatalog
from keel.errors import BackendError

RUN = "ab" * 16


def test_driver_reads_report_an_outage_as_the_catalogs_error_and_recover(private_postgres: Any) -> None:
    catalog = SqlCatalog(private_postgres.url)
    try:
        catalog.start_run(run_id=RUN, spec="s", spec_snapshot={}, params={"c": 1})
        catalog.add_model_version(name="m", run_id=RUN, package_digest="0" * 64, package_format="skops")
        assert catalog.run(RUN).params == {"c": 1}
        private_postgres.stop()
        for read in (lambda: catalog.run(RUN), lambda: catalog.runs_by_ids([RUN]), lambda: catalog.model_page("m")):
            with pytest.raises(BackendError, match="catalog"):
                read()
        private_postgres.start()
        for _ in range(50):  # one read a second tries the database again; the pool replaces dead connections
            try:
                assert catalog.run(RUN).params == {"c": 1}
                break
            except BackendError:
                import time

                time.sleep(0.1)
        else:
            pytest.fail("the catalog did not recover")
        assert catalog.model_page("m")["version_count"] == 1
    finally:
        catalog.close()


def test_driver_reads_on_a_sqlite_file_see_every_commit_of_other_processes(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    reader, writer = SqlCatalog(url), SqlCatalog(url)
    try:
        writer.start_run(run_id=RUN, spec="s", spec_snapshot={}, params={})
        assert reader.run(RUN).status == "running"  # the reader's own connection now holds the file open
        writer.finish_run(RUN, status="finished", params={}, metrics={"auc": 0.9}, durations={}, lineage={})
        assert (reader.run(RUN).status, reader.run(RUN).metrics) == ("finished", {"auc": 0.9})
        assert reader.runs_by_ids([RUN])[0].status == "finished"
        reader.close()  # its own connections are closed; the next read opens another
        assert reader.run(RUN).metrics == {"auc": 0.9}
    finally:
        reader.close()
        writer.close()
