"""The objects a function builds once, at cold start, from its environment: settings, connector configuration, S3
store, and the domain services on top of them. The API function and the builder function share this, so a manifest
built asynchronously comes from exactly the same configuration as one built synchronously."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from weasis_link.audit import AuditTrail, audit_trail
from weasis_link.config import AppConfig, load_config
from weasis_link.launch import Launcher
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.short_links import ManifestLinks
from weasis_link.storage import ManifestStore, s3_client
from weasis_link.upload import ManifestUploads

DEFAULT_CONFIG_FILE = "weasis-link.yaml"


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: ServiceSettings
    config: AppConfig
    store: ManifestStore
    service: ManifestService
    launcher: Launcher
    links: ManifestLinks
    uploads: ManifestUploads
    audit: AuditTrail


def config_path(settings: ServiceSettings, function_dir: Path) -> Path:
    """WEASIS_LINK_CONFIG, relative to the function's code (LAMBDA_TASK_ROOT on Lambda)."""
    path = settings.config_file or Path(DEFAULT_CONFIG_FILE)
    if path.is_absolute():
        return path
    return Path(os.environ.get("LAMBDA_TASK_ROOT") or function_dir) / path


def build_runtime(function_dir: Path, settings: ServiceSettings | None = None) -> Runtime:
    settings = settings or ServiceSettings.from_environment()
    config = load_config(config_path(settings, function_dir))
    store = ManifestStore(
        s3_client(settings.aws_region, settings.s3_endpoint_url),
        settings.manifest_bucket,
        settings.manifest_prefix,
        settings.manifest_kms_key_arn,
    )
    audit = audit_trail(
        settings.audit_event_bus, settings.aws_region, settings.events_endpoint_url, fail_open=settings.audit_fail_open
    )
    return runtime_for(settings, config, store, audit)


def runtime_for(
    settings: ServiceSettings, config: AppConfig, store: ManifestStore, audit: AuditTrail | None = None
) -> Runtime:
    """The services over a given store (tests swap the store for one on moto)."""
    service = ManifestService(settings, config, store)
    audit = audit or AuditTrail(None)
    launcher = Launcher(service, store, settings.build_deadline_seconds)
    launcher.audit = audit
    return Runtime(
        settings=settings,
        config=config,
        store=store,
        service=service,
        launcher=launcher,
        links=ManifestLinks(store, settings.presign_expires_seconds),
        uploads=ManifestUploads(service, settings.upload_max_bytes),
        audit=audit,
    )
