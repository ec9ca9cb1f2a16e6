"""HTTP API (API Gateway HTTP API -> Lambda): thin routes over weasis_link.

Routes only: each authenticates the caller, reads the request (weasis_link.http), calls one domain function and
maps the result; domain errors become problem responses (weasis_link/http/problems.py). Everything expensive
(settings, configuration, S3 and Lambda clients, JWKS client, connectors, the build dispatcher) is built once per
container, at cold start (weasis_link.runtime.build_runtime); `make_handler` binds the routes to that runtime.

Routes: GET /manifests (build now, JSON), POST /manifests (upload), GET /manifests/{id} (short link -> 302),
GET /weasis and GET /IHEInvokeImageDisplay (launch while the manifest builds: 302 to weasis://, or the HTML launch
page for browsers).
"""

from __future__ import annotations

# First: no garbage collection while the function initialises (the heap is frozen at the end of this module).
import weasis_link.init_phase  # isort: skip

# Then: PyJWT's cryptography.x509 and the event handler package's __init__ (every resolver), executed only if used.
import weasis_link.lazy_imports  # isort: skip
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Depends, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from weasis_link.auth import Caller
from weasis_link.criteria import QueryCriteria, criteria_from_pairs
from weasis_link.errors import AllArchivesFailed, WeasisLinkError
from weasis_link.http import schemas
from weasis_link.http.audit_requests import RequestAudit
from weasis_link.http.iid import iid_criteria_pairs
from weasis_link.http.launch_page import launch_page, page_headers, wants_html
from weasis_link.http.problems import NO_STORE, problem, problem_for
from weasis_link.http.requests import (
    api_base_url,
    extract_bearer_token,
    parse_query_string,
    query_pairs_without_token,
    read_upload,
    request_body,
)
from weasis_link.http.resolver_cache import cache_route_dependencies
from weasis_link.launch import LaunchResult
from weasis_link.launch_options import allowed_launch_options
from weasis_link.launch_uri import LaunchOptions
from weasis_link.manifest_links import InlineManifest
from weasis_link.metrics import record_archive_outcomes
from weasis_link.observability import configure_logging
from weasis_link.runtime import Runtime, build_runtime
from weasis_link.service import ManifestResult
from weasis_link.snapstart import after_restore, forget_process_caches

logger = Logger()
metrics = Metrics()
configure_logging(logger)

app = APIGatewayHttpResolver(enable_validation=True)
# Keep GET /manifests/{id} below API Gateway's 29 s even when the function has less time left than configured.
RESPONSE_MARGIN_SECONDS = 2.0


# --- request parsing shared by the routes (Depends) ---------------------------------------------------------


def _runtime() -> Runtime:
    """The runtime the handler was made with (make_handler puts it in the resolver's per-request context)."""
    return cast(Runtime, app.context["runtime"])


def _audit() -> RequestAudit:
    """The audit trail at the API's edge (http/audit_requests.py), over this runtime's trail and store."""
    runtime = _runtime()
    return RequestAudit(runtime.audit, runtime.store)


def _request_pairs() -> list[tuple[str, str]]:
    return parse_query_string(app.current_event.raw_query_string or "")


def _header(name: str) -> str | None:
    return next((v for k, v in app.current_event.headers.items() if k.lower() == name), None)


def authenticated_caller() -> Caller:
    """The bearer token (header, or access_token= when allowed: the OpenAPI document's security schemes)."""
    runtime = _runtime()
    token = extract_bearer_token(
        app.current_event.headers, _request_pairs(), allow_query=runtime.settings.allow_access_token_query
    )
    caller = runtime.validator.validate(token)
    app.context["caller"] = caller  # for the audit event of a refusal that comes later in the request
    return caller


def search_criteria(  # the parameters document the query interface (see weasis_link/http/schemas.py)
    patient_id: schemas.PatientIdParam = None,  # noqa: ARG001
    study_uid: schemas.StudyUidParam = None,  # noqa: ARG001
    accession_number: schemas.AccessionParam = None,  # noqa: ARG001
    series_uid: schemas.SeriesUidParam = None,  # noqa: ARG001
    object_uid: schemas.ObjectUidParam = None,  # noqa: ARG001
    archive: schemas.ArchiveParam = None,  # noqa: ARG001
    modalities_in_study: schemas.ModalitiesParam = None,  # noqa: ARG001
    contains_in_description: schemas.DescriptionParam = None,  # noqa: ARG001
    lower_date_time: schemas.LowerDateParam = None,  # noqa: ARG001
    upper_date_time: schemas.UpperDateParam = None,  # noqa: ARG001
    most_recent_results: schemas.MostRecentParam = None,  # noqa: ARG001
) -> QueryCriteria:
    # A key is required unless the token's patient context supplies it: checked by _authorized_query.
    return criteria_from_pairs(query_pairs_without_token(_request_pairs()), require_key=False)


def _authorized_query(query: list[tuple[str, str]], caller: Caller) -> tuple[list[tuple[str, str]], QueryCriteria]:
    """The query confined to the caller's patient context (if any), and its criteria (a key now required)."""
    confined = _runtime().service.confine_query(query, caller)
    return confined, criteria_from_pairs(confined)


def iid_query(  # IHE Invoke Image Display parameters (documented in weasis_link/http/schemas.py)
    request_type: schemas.RequestTypeParam = None,  # noqa: ARG001
    patient_id: schemas.IidPatientIdParam = None,  # noqa: ARG001
    study_uid: schemas.IidStudyUidParam = None,  # noqa: ARG001
    accession_number: schemas.IidAccessionParam = None,  # noqa: ARG001
    viewer_type: schemas.ViewerTypeParam = None,  # noqa: ARG001
    diagnostic_quality: schemas.DiagnosticQualityParam = None,  # noqa: ARG001
    key_images_only: schemas.KeyImagesOnlyParam = None,  # noqa: ARG001
    archive: schemas.ArchiveParam = None,  # noqa: ARG001
    modalities_in_study: schemas.ModalitiesParam = None,  # noqa: ARG001
    lower_date_time: schemas.LowerDateParam = None,  # noqa: ARG001
    upper_date_time: schemas.UpperDateParam = None,  # noqa: ARG001
    most_recent_results: schemas.MostRecentParam = None,  # noqa: ARG001
) -> list[tuple[str, str]]:
    """The search-criteria parameters the IID request stands for."""
    return iid_criteria_pairs(query_pairs_without_token(_request_pairs()), _runtime().settings.iid_request_types)


def launch_options(
    cdb: schemas.CdbParam = None,  # noqa: ARG001
    pro: schemas.ProParam = None,  # noqa: ARG001
    arg: schemas.ArgParam = None,  # noqa: ARG001
) -> LaunchOptions:
    return allowed_launch_options(_request_pairs(), _runtime().config.launch_options)


def base_url() -> str:
    context = app.current_event.request_context
    return api_base_url(_runtime().settings.public_base_url, context.domain_name, context.stage)


def html_requested(format: schemas.FormatParam = None) -> bool:  # noqa: ARG001 - documented only
    return wants_html(_header("accept"), [v for k, v in _request_pairs() if k == "format"])


CallerDep = Annotated[Caller, Depends(authenticated_caller)]
CriteriaDep = Annotated[QueryCriteria, Depends(search_criteria)]
IidQueryDep = Annotated[list[tuple[str, str]], Depends(iid_query)]
LaunchDep = Annotated[LaunchOptions, Depends(launch_options)]
BaseUrlDep = Annotated[str, Depends(base_url)]
HtmlDep = Annotated[bool, Depends(html_requested)]


# --- routes -------------------------------------------------------------------------------------------------


@app.get(
    "/manifests",
    summary="Build a Weasis manifest and return its links as JSON",
    responses={
        200: {"description": "Manifest stored", "content": {"application/json": {"model": schemas.ManifestResponse}}},
        **schemas.problem_responses(400, 401, 403, 409, 422, 502, 503, 504),
    },
)
def get_manifest_links(caller: CallerDep, criteria: CriteriaDep, launch: LaunchDep, base: BaseUrlDep) -> Response[str]:
    audit = _audit()
    audit.require_read_scopes(caller, _runtime().settings)
    _, criteria = _authorized_query(query_pairs_without_token(_request_pairs()), caller)
    gate = audit.disclosure_gate(app.current_event.raw_event, caller, _request_pairs())
    result = _runtime().service.create_manifest(criteria, caller, launch, base_url=base, before_store=gate)
    _record_metrics(result)
    return _manifest_json(200, result)


@app.post(
    "/manifests",
    summary="Upload a Weasis manifest (XML) or a JSON list of UIDs to resolve; answered like a built manifest",
    responses={
        201: {"description": "Manifest stored", "content": {"application/json": {"model": schemas.ManifestResponse}}},
        **schemas.problem_responses(400, 401, 403, 409, 413, 415, 422, 502, 503, 504),
    },
)
def upload_manifest(
    caller: CallerDep, launch: LaunchDep, base: BaseUrlDep, inject_token: schemas.InjectTokenParam = False
) -> Response[str]:
    runtime = _runtime()
    audit = _audit()
    audit.require_upload_scopes(caller, runtime.settings)
    gate = audit.upload_gate(app.current_event.raw_event, caller, _header("content-type"))
    body = request_body(app.current_event.raw_event)
    document = read_upload(
        body, _header("content-type"), _header("content-encoding"), runtime.settings.upload_max_bytes
    )
    result = runtime.uploads.upload(
        document.media_type, document.content, caller, launch, base, inject_token=inject_token, before_store=gate
    )
    metrics.add_metric(name="ManifestsUploaded", unit=MetricUnit.Count, value=1)
    return _manifest_json(201, result, {"Location": result.manifest_link})


@app.get(
    "/manifests/<manifest_id>",
    summary="Short manifest link: redirect to the stored manifest, waiting while it is being built",
    responses={
        302: {
            "description": "Location: a fresh presigned URL of the gzipped manifest (or this link again)",
            "content": schemas.EMPTY_BODY,
        },
        200: {
            "description": "A manifest whose <Message> says why no images can be listed (yet)",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
        **schemas.problem_responses(404, 422, 503),
    },
)
def open_manifest(manifest_id: str, base: BaseUrlDep, attempt: schemas.AttemptParam = 0) -> Response[str]:
    runtime = _runtime()
    wait = runtime.settings.manifest_wait_seconds
    context = app.lambda_context
    if context is not None:
        wait = min(wait, context.get_remaining_time_in_millis() / 1000 - RESPONSE_MARGIN_SECONDS)
    answer = runtime.links.open(manifest_id, attempt, base, wait)
    if isinstance(answer, InlineManifest):
        logger.warning("manifest not available", extra={"reason": answer.reason})
        metrics.add_metric(name="ManifestLinksUnavailable", unit=MetricUnit.Count, value=1)
        return Response(200, "application/xml; charset=utf-8", answer.xml.decode("utf-8"), headers=NO_STORE)
    if answer.to_manifest:
        _audit().redeemed(app.current_event.raw_event, manifest_id)
    metrics.add_metric(name="ManifestLinksOpened", unit=MetricUnit.Count, value=1)
    return Response(302, "text/plain", "", headers={"Location": answer.location, **NO_STORE})


@app.get(
    "/weasis",
    summary="Open Weasis: redirect to the weasis:// URI (or a launch page for browsers) while the manifest builds",
    responses=schemas.LAUNCH_RESPONSES,
)
def launch_weasis(
    caller: CallerDep,
    criteria: CriteriaDep,  # noqa: ARG001 - parsed for its 400s and the OpenAPI document; confined below
    launch: LaunchDep,
    base: BaseUrlDep,
    html: HtmlDep,
) -> Response[str]:
    return _launch_response(_launch(query_pairs_without_token(_request_pairs()), caller, launch, base), html)


@app.get(
    "/IHEInvokeImageDisplay",
    summary="IHE Invoke Image Display (requestType STUDY or PATIENT): open Weasis while the manifest builds",
    responses=schemas.LAUNCH_RESPONSES,
)
def invoke_image_display(
    caller: CallerDep, query: IidQueryDep, launch: LaunchDep, base: BaseUrlDep, html: HtmlDep
) -> Response[str]:
    return _launch_response(_launch(query, caller, launch, base), html)


def _launch(query: list[tuple[str, str]], caller: Caller, launch: LaunchOptions, base: str) -> LaunchResult:
    audit = _audit()
    audit.require_read_scopes(caller, _runtime().settings)
    query, criteria = _authorized_query(query, caller)
    context, gate = audit.launch_gate(app.current_event.raw_event, caller, query, criteria)
    # A launch answered after the archives (ambiguous patient, wildcard) stores its manifest itself: audited too.
    disclosure = audit.disclosure_gate(app.current_event.raw_event, caller, query) if context is not None else None
    return _runtime().launcher.launch(
        query, criteria, caller, launch, base, audit=context, before_dispatch=gate, before_store=disclosure
    )


# --- responses ----------------------------------------------------------------------------------------------


def _manifest_json(status: int, result: ManifestResult, headers: dict[str, str] | None = None) -> Response[str]:
    body = schemas.ManifestResponse(
        manifest_id=result.manifest_id,
        manifest_url=result.manifest_url,
        manifest_link=result.manifest_link,
        weasis_url=result.weasis_url,
        expires_at=result.expires_at,
        patients=result.patients,
        studies=result.studies,
        series=result.series,
        instances=result.instances,
        failed_archives=[
            schemas.FailedArchive(archive=f.archive_id, kind=f.kind, detail=f.detail) for f in result.failed_archives
        ],
        warnings=result.warnings,
    )
    return Response(
        status, "application/json", body.model_dump_json(by_alias=True), headers={**NO_STORE, **(headers or {})}
    )


def _launch_response(result: LaunchResult, html: bool) -> Response[str]:
    metrics.add_metric(name="LaunchesStarted", unit=MetricUnit.Count, value=1)
    if html:
        download_url = _runtime().settings.weasis_download_url
        page = launch_page(result.weasis_url, result.expires_at, download_url, result.warnings)
        return Response(200, "text/html; charset=utf-8", page, headers=page_headers({"Vary": "Accept"}))
    return Response(302, "text/plain", "", headers={"Location": result.weasis_url, "Vary": "Accept", **NO_STORE})


# --- errors -------------------------------------------------------------------------------------------------


def _refused(code: str) -> None:
    logger.info("request refused", extra={"code": code})
    # A blob of its own: a dimension added to `metrics` would stick to every metric of the invocation.
    with single_metric(
        name="RequestsRefused",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions=metrics.default_dimensions,
    ) as metric:
        metric.add_dimension(name="code", value=code)


@app.exception_handler(WeasisLinkError)
def _domain_error(error: WeasisLinkError) -> Response[str]:
    if isinstance(error, AllArchivesFailed):
        record_archive_outcomes(metrics, {}, error.failures)
    _refused(error.code)
    response = problem_for(error)
    if "runtime" in app.context:
        _audit().refused(
            app.current_event.raw_event, app.context.get("caller"), _pairs_or_none(), error, response.status_code
        )
    return response


def _pairs_or_none() -> list[tuple[str, str]]:
    try:
        return _request_pairs()
    except WeasisLinkError:
        return []


@app.exception_handler(RequestValidationError)
def _validation_error(error: RequestValidationError) -> Response[str]:
    _refused("validation-error")
    errors = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "message": str(e.get("msg", e.get("type")))}
        for e in error.errors()
    ]
    return problem(
        422, "Invalid request", "The request does not match the API.", "validation-error", extra={"errors": errors}
    )


@app.not_found
def _not_found(_: NotFoundError) -> Response[str]:
    _refused("not-found")
    return problem(404, "Not found", "No such route.", "not-found")


@app.exception_handler(Exception)
def _unexpected(_: Exception) -> Response[str]:
    logger.exception("unexpected error")
    _refused("internal-error")
    return problem(500, "Internal error", "The request failed unexpectedly; it has been logged.", "internal-error")


def _record_metrics(result: ManifestResult) -> None:
    metrics.add_metric(name="ManifestsBuilt", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="Instances", unit=MetricUnit.Count, value=result.instances)
    record_archive_outcomes(
        metrics,
        {o.archive_id: o.seconds for o in result.archives},
        [o.failure for o in result.archives if o.failure is not None],
    )


def make_handler(runtime: Runtime) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda handler over `runtime` (tests make one over their own runtime; Lambda's is built below)."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
    @metrics.log_metrics(capture_cold_start_metric=True)
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if runtime.refresher is not None:
            runtime.refresher.refresh_if_stale()  # rotated secrets (SECRETS_MAX_AGE_SECONDS)
        app.context["runtime"] = runtime  # the per-request context: resolve() clears it after each request
        return app.resolve(event, context)

    return cast("Callable[[dict[str, Any], LambdaContext], dict[str, Any]]", handler)  # log_metrics(...) is untyped


# Built once per container, at cold start (Lambda's init phase).
runtime = build_runtime(Path(__file__).parent, prefetch_keys=True)
_handler = make_handler(runtime)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda's entry point: it keeps this function from init on, so a SnapStart restore swaps what it calls."""
    return _handler(event, context)


@after_restore
def _renew_after_restore() -> None:
    """SnapStart: a new runtime, so nothing that holds connections, clocks or resolved secrets outlives the snapshot
    (weasis_link.snapstart)."""
    global runtime, _handler
    forget_process_caches()
    runtime = build_runtime(Path(__file__).parent, prefetch_keys=True)
    _handler = make_handler(runtime)


cache_route_dependencies(app)  # every route is registered: resolve their Depends() trees once, now
runtime.validator.settle_prefetch()  # no key fetch left in flight when Lambda freezes the environment after Init
weasis_link.init_phase.done()
