"""The model a Serve replica answers with, following the registry's alias when it serves one.

A replica that serves ``models:/NAME@champion`` loads the version the alias points at, and a thread polls the
alias every ``poll_s`` seconds: when it has moved, the new version is loaded beside the old one (requests go on
being answered by the old one meanwhile) and then swapped in with one assignment. A batch takes the ``Loaded``
it finds when it starts, so every answer comes from one version and says which; no request is dropped or
answered by half a model. A registry that cannot be reached keeps the current model (a warning in the log).
A fixed version (``models:/NAME/3``) or a run's model is never swapped.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import mlflow.pyfunc

from mnist_job.tracking.client import mlflow_client

logger = logging.getLogger(__name__)
ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


@dataclass(frozen=True)
class Loaded:
    model: Any  # an mlflow.pyfunc model
    version: str | None  # the registry version it is; None for a run's model


class ServedModel:
    def __init__(self, tracking_uri: str, model_uri: str, poll_s: float = 30.0):
        mlflow.set_tracking_uri(tracking_uri)
        self.client, self.model_uri, self.poll_s = mlflow_client(tracking_uri), model_uri, poll_s
        self.alias = ALIAS_URI.match(model_uri)
        self.current = self._load(self._version())
        if self.alias and poll_s > 0:
            threading.Thread(target=self._follow, name="follow-alias", daemon=True).start()

    def _version(self) -> str | None:
        if self.alias:
            return str(self.client.get_model_version_by_alias(self.alias["name"], self.alias["alias"]).version)
        fixed = VERSION_URI.match(self.model_uri)
        return fixed["version"] if fixed else None

    def _load(self, version: str | None) -> Loaded:
        uri = f"models:/{self.alias['name']}/{version}" if self.alias else self.model_uri
        return Loaded(mlflow.pyfunc.load_model(uri), version)

    def _follow(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.poll_s):
            try:
                version = self._version()
                if version != self.current.version:
                    loaded = self._load(version)  # the old one answers while this loads
                    previous, self.current = self.current.version, loaded
                    logger.info(f"{self.model_uri}: version {previous} -> {version}")
            except Exception as exc:  # noqa: BLE001 (the registry away, a version half registered: keep serving)
                logger.warning(f"{self.model_uri}: could not follow the alias ({exc}); still serving version "
                               f"{self.current.version}")
