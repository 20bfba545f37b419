"""The served model, started once for the HTTP and the browser tests of this folder."""

from __future__ import annotations

import pytest

from loopback.serving import serving


@pytest.fixture(scope="session")
def served(tmp_path_factory, champion_server):
    with serving(tmp_path_factory.mktemp("serve"), champion_server.tracking_uri) as app:
        yield app
