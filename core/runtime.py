"""The services a process shares: settings, database engine, plugins and a Temporal client.

Surfaces (API, CLI, worker) build one :class:`Runtime` at start-up and hand it down, so
nothing below them reaches for globals.
"""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from suifang.core.channel_directory import ChannelDirectory
from suifang.core.config import Settings
from suifang.core.db import create_db_engine
from suifang.core.pathway_catalogue import add_published, catalogue_stamp
from suifang.core.pathway_checks import Vocabulary, load_pathways_dir, vocabulary_of
from suifang.core.pathways import PathwayCatalog
from suifang.core.plugins import Plugins
from suifang.core.security.codec import PayloadEncryptionCodec
from suifang.core.security.crypto import configure_keyring, get_keyring, keyring_from_settings
from suifang.core.temporal import connect_client

__all__ = ["Runtime"]


@dataclasses.dataclass
class Runtime:
    settings: Settings
    engine: Engine
    plugins: Plugins
    _catalog: PathwayCatalog | None = None
    _catalog_stamp: tuple[int, object] | None = None
    _channels: ChannelDirectory | None = None
    _client: Client | None = None
    _client_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    worker_metrics_address: str | None = None
    """Where this process's worker serves the Temporal SDK's metrics (set by ``suifang
    worker`` and ``suifang up`` before the client connects; None: not served)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, plugins: Plugins | None = None) -> Runtime:
        configure_keyring(keyring_from_settings(settings))
        return cls(
            settings=settings,
            engine=create_db_engine(
                settings.database_url, statement_timeout=settings.database_statement_timeout
            ),
            plugins=plugins or Plugins.load(disabled=settings.disabled_plugins),
        )

    @property
    def catalog(self) -> PathwayCatalog:
        """Every pathway template the plugins registered, then the hospital's own
        (``SUIFANG_PATHWAYS_DIR``), then the catalogue's published versions: loaded and
        validated once, and again whenever the catalogue changes (one small query)."""
        stamp = catalogue_stamp(self.engine)
        if self._catalog is None or stamp != self._catalog_stamp:
            catalog = self.plugins.pathway_catalog()
            if self.settings.pathways_dir is not None:
                for path, template in load_pathways_dir(
                    self.settings.pathways_dir, self.vocabulary()
                ):
                    catalog.add(template, str(path))
            if stamp is not None:
                with Session(self.engine) as session:
                    add_published(catalog, session)
            self._catalog, self._catalog_stamp = catalog, stamp
        return self._catalog

    def vocabulary(self) -> Vocabulary:
        """What a pathway may name here: channels, departments, indicators."""
        return vocabulary_of(self.engine, self.settings, self.plugins.channel_classes())

    @property
    def channels(self) -> ChannelDirectory:
        """The channels this process can use (instances and rate limits shared by all sends)."""
        if self._channels is None:
            self._channels = ChannelDirectory(self.plugins)
        return self._channels

    def use_channels(self, channels: ChannelDirectory) -> Runtime:
        """Send through ``channels`` from now on (the test kit's recording directory)."""
        self._channels = channels
        return self

    def with_client(self, client: Client) -> Runtime:
        self._client = client
        return self

    async def client(self, *, wait: float = 0.0) -> Client:
        """The Temporal client, connected on first use (raises StartupError if unreachable
        after ``wait`` seconds of trying)."""
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    self._client = await connect_client(
                        self.settings,
                        codec=self.codec,
                        wait=wait,
                        metrics_address=self.worker_metrics_address,
                    )
        return self._client

    @property
    def codec(self) -> PayloadEncryptionCodec:
        """Encrypts every Temporal payload with the process's keys."""
        return PayloadEncryptionCodec(get_keyring())

    def close(self) -> None:
        self.engine.dispose()
