"""The composition root: everything a function builds once, at cold start, from its environment: settings, connector
configuration, S3 store, token validator, and the domain services on top of them (with the build dispatcher). The
API function and the builder function share this, so a manifest built asynchronously comes from exactly the same
configuration as one built synchronously; tests build their runtime here too (over a moto store)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from weasis_link.audit_trail import AuditTrail, audit_trail
from weasis_link.auth import TokenValidator
from weasis_link.config import AppConfig, load_config
from weasis_link.launch import BuildDispatcher, Builder, InlineDispatcher, Launcher, make_dispatcher
from weasis_link.manifest_links import ManifestLinks
from weasis_link.secret_references import resolve_reference
from weasis_link.secret_refresh import ConfigRefresher, RecordingResolver
from weasis_link.service import ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client
from weasis_link.upload import ManifestUploads

DEFAULT_CONFIG_FILE = "weasis-link.yaml"


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: ServiceSettings
    config: AppConfig
    store: ManifestStore
    validator: TokenValidator
    service: ManifestService
    builder: Builder
    dispatcher: BuildDispatcher
    launcher: Launcher
    links: ManifestLinks
    uploads: ManifestUploads
    audit: AuditTrail
    # Re-reads the configuration when its secrets are older than SECRETS_MAX_AGE_SECONDS (handlers call it first).
    refresher: ConfigRefresher | None = None


def config_path(settings: ServiceSettings, function_dir: Path) -> Path:
    """WEASIS_LINK_CONFIG, relative to the function's code (LAMBDA_TASK_ROOT on Lambda)."""
    path = settings.config_file or Path(DEFAULT_CONFIG_FILE)
    if path.is_absolute():
        return path
    return Path(os.environ.get("LAMBDA_TASK_ROOT") or function_dir) / path


def build_runtime(
    function_dir: Path,
    settings: ServiceSettings | None = None,
    *,
    store: ManifestStore | None = None,
    inline_builds: bool = False,
    prefetch_keys: bool = False,
) -> Runtime:
    """The runtime of a function whose code (and connector YAML) is in `function_dir`. `store` replaces the S3
    store of the settings; `inline_builds` builds launches before they answer (instead of the dispatcher that
    `make_dispatcher` chooses), so that no build outlives a test; `prefetch_keys` (the API function, which validates
    tokens) fetches the issuers' key sets on a thread now, so the first request finds them."""
    settings = settings or ServiceSettings.from_environment()
    path = config_path(settings, function_dir)
    resolver = RecordingResolver(resolve_reference)
    config = load_config(path, resolve_secret=resolver)
    if store is None:
        store = ManifestStore(
            s3_client(settings.aws_region, settings.s3_endpoint_url),
            settings.manifest_bucket,
            settings.manifest_prefix,
            settings.manifest_kms_key_arn,
        )
    service = ManifestService(settings, config, store)
    audit = audit_trail(
        settings.audit_event_bus, settings.aws_region, settings.events_endpoint_url, fail_open=settings.audit_fail_open
    )
    builder = Builder(service, store, settings.build_deadline_seconds, audit=audit)
    dispatcher: BuildDispatcher
    if inline_builds:
        dispatcher = InlineDispatcher(builder.run_build)
    else:
        dispatcher = make_dispatcher(
            settings.builder_function_name,
            settings.aws_region,
            builder.run_build,
            on_lambda="AWS_LAMBDA_FUNCTION_NAME" in os.environ,
        )
    validator = TokenValidator(settings, config.auth)
    if prefetch_keys:  # the network wait overlaps the rest of Init (the handler module's routes, the audit client)
        validator.prefetch_keys()
    # Every client of the function exists now: the audit trail's is made on a thread of its own, overlapping the
    # rest of Init and the first request's waits (token keys, archives) rather than adding to the first request.
    audit.prepare()
    return Runtime(
        settings=settings,
        config=config,
        store=store,
        validator=validator,
        service=service,
        builder=builder,
        dispatcher=dispatcher,
        launcher=Launcher(service, store, dispatcher, settings.build_deadline_seconds),
        links=ManifestLinks(store, settings.presign_expires_seconds),
        uploads=ManifestUploads(service),
        refresher=ConfigRefresher(
            lambda: load_config(path, resolve_secret=resolve_reference),
            service.reconfigure,
            settings.secrets_max_age_seconds,
            enabled=resolver.used_secret_store,
        ),
        audit=audit,
    )
