"""Connectors to PACS: DB (SQL), DICOM (C-FIND), DICOM_WEB (QIDO-RS).

Each type lives in its own module and is imported only when a connector of that type is configured, so a
DICOMweb-only deployment never pays for pydicom, pynetdicom or SQLAlchemy at cold start, nor SQLite (the embedded
archive) for SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from weasis_link.config import ConnectorConfig, DbConnectorConfig
from weasis_link.connectors.base import Connector, QueryContext

if TYPE_CHECKING:
    from weasis_link.connectors.database import DatabaseConnector
    from weasis_link.connectors.sqlite import SqliteConnector


def create_connector(connector_id: str, config: ConnectorConfig) -> Connector:
    if config.type == "DB":
        assert config.db_connector is not None  # guaranteed by the config model
        return database_connector(connector_id, config.db_connector)
    if config.type == "DICOM":
        from weasis_link.connectors.dicom import DicomConnector

        assert config.dicom_connector is not None
        return DicomConnector(connector_id, config.dicom_connector)
    from weasis_link.connectors.dicomweb import DicomWebConnector

    assert config.dicom_web_connector is not None
    return DicomWebConnector(connector_id, config.dicom_web_connector)


def database_connector(connector_id: str, db: DbConnectorConfig) -> DatabaseConnector | SqliteConnector:
    """SQLite through the standard library's sqlite3; every other database through SQLAlchemy Core."""
    from weasis_link.connectors.sqlite import SqliteConnector, sqlite_database

    if sqlite_database(db) is not None:
        return SqliteConnector(connector_id, db)
    from weasis_link.connectors.database import DatabaseConnector

    return DatabaseConnector(connector_id, db)


__all__ = ["Connector", "QueryContext", "create_connector", "database_connector"]
