"""Connectors to PACS: DB (SQL), DICOM (C-FIND), DICOM_WEB (QIDO-RS).

Each type lives in its own module and is imported only when a connector of that type is configured, so a
DICOMweb-only deployment never pays for pydicom, pynetdicom or SQLAlchemy at cold start.
"""

from __future__ import annotations

from weasis_link.config import ConnectorConfig
from weasis_link.connectors.base import Connector, QueryContext


def create_connector(connector_id: str, config: ConnectorConfig) -> Connector:
    if config.type == "DB":
        from weasis_link.connectors.database import DatabaseConnector

        assert config.db_connector is not None  # guaranteed by the config model
        return DatabaseConnector(connector_id, config.db_connector)
    if config.type == "DICOM":
        from weasis_link.connectors.dicom import DicomConnector

        assert config.dicom_connector is not None
        return DicomConnector(connector_id, config.dicom_connector)
    from weasis_link.connectors.dicomweb import DicomWebConnector

    assert config.dicom_web_connector is not None
    return DicomWebConnector(connector_id, config.dicom_web_connector)


__all__ = ["Connector", "QueryContext", "create_connector"]
