"""HTTP API (API Gateway HTTP API -> Lambda): thin routes over weasis_link.

Each route authenticates the caller, parses the request, calls one domain function and maps the result; domain
errors become problem responses in problems.py. Everything expensive (settings, configuration, S3 client, JWKS
client, connectors) is built once per container, at cold start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Depends, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from weasis_link.api import schemas
from weasis_link.api.problems import NO_STORE, problem, problem_for
from weasis_link.auth import Caller, TokenValidator, extract_bearer_token, query_pairs_without_token
from weasis_link.config import load_config
from weasis_link.criteria import QueryCriteria, criteria_from_pairs, parse_query_string
from weasis_link.errors import WeasisLinkError
from weasis_link.launch_uri import LaunchOptions, launch_options_from_pairs
from weasis_link.observability import configure_logging
from weasis_link.service import ManifestResult, ManifestService
from weasis_link.settings import ServiceSettings
from weasis_link.storage import ManifestStore, s3_client

logger = Logger()
metrics = Metrics()
configure_logging(logger)

settings = ServiceSettings.from_environment()
_config_path = settings.config_file or Path("weasis-link.yaml")
if not _config_path.is_absolute():
    _config_path = Path(os.environ.get("LAMBDA_TASK_ROOT") or Path(__file__).parent) / _config_path
config = load_config(_config_path)
store = ManifestStore(
    s3_client(settings.aws_region, settings.s3_endpoint_url),
    settings.manifest_bucket,
    settings.manifest_prefix,
    settings.manifest_kms_key_arn,
)
service = ManifestService(settings, config, store)
validator = TokenValidator(settings)

app = APIGatewayHttpResolver(enable_validation=True)


# --- request parsing shared by the routes (Depends) ---------------------------------------------------------


def _request_pairs() -> list[tuple[str, str]]:
    return parse_query_string(app.current_event.raw_query_string or "")


def authenticated_caller(access_token: schemas.AccessTokenParam = None) -> Caller:  # noqa: ARG001 - documented only
    token = extract_bearer_token(
        app.current_event.headers, _request_pairs(), allow_query=settings.allow_access_token_query
    )
    return validator.validate(token)


def search_criteria(  # the parameters document the query interface (see weasis_link/api/schemas.py)
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
    return criteria_from_pairs(query_pairs_without_token(_request_pairs()))


def launch_options(
    cdb: schemas.CdbParam = None,  # noqa: ARG001
    pro: schemas.ProParam = None,  # noqa: ARG001
    arg: schemas.ArgParam = None,  # noqa: ARG001
) -> LaunchOptions:
    return launch_options_from_pairs(_request_pairs())


CallerDep = Annotated[Caller, Depends(authenticated_caller)]
CriteriaDep = Annotated[QueryCriteria, Depends(search_criteria)]
LaunchDep = Annotated[LaunchOptions, Depends(launch_options)]


# --- routes -------------------------------------------------------------------------------------------------


@app.get(
    "/manifests",
    summary="Build a Weasis manifest and return its links as JSON",
    responses={
        200: {"description": "Manifest stored", "content": {"application/json": {"model": schemas.ManifestResponse}}},
        **schemas.problem_responses(400, 401, 403, 422, 502, 503, 504),
    },
)
def get_manifest_links(caller: CallerDep, criteria: CriteriaDep, launch: LaunchDep) -> Response[str]:
    result = service.create_manifest(criteria, caller, launch)
    _record_metrics(result)
    body = schemas.ManifestResponse(
        manifest_url=result.manifest_url,
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
    return Response(200, "application/json", body.model_dump_json(by_alias=True), headers=NO_STORE)


@app.get(
    "/weasis",
    summary="Build a Weasis manifest and redirect to the weasis:// URI that opens it",
    responses={
        302: {"description": "Location: weasis://?…"},
        **schemas.problem_responses(400, 401, 403, 422, 502, 503, 504),
    },
)
def launch_weasis(caller: CallerDep, criteria: CriteriaDep, launch: LaunchDep) -> Response[str]:
    result = service.create_manifest(criteria, caller, launch)
    _record_metrics(result)
    return Response(302, "text/plain", "", headers={"Location": result.weasis_url, **NO_STORE})


# --- errors -------------------------------------------------------------------------------------------------


def _refused(code: str) -> None:
    logger.info("request refused", extra={"code": code})
    metrics.add_dimension(name="code", value=code)
    metrics.add_metric(name="RequestsRefused", unit=MetricUnit.Count, value=1)


@app.exception_handler(WeasisLinkError)
def _domain_error(error: WeasisLinkError) -> Response[str]:
    _refused(error.code)
    return problem_for(error)


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
    for outcome in result.archives:
        with single_metric(
            name="ArchiveQueryTime",
            unit=MetricUnit.Milliseconds,
            value=outcome.seconds * 1000,
            namespace=metrics.namespace,
        ) as metric:
            metric.add_dimension(name="archive", value=outcome.archive_id)
        if outcome.failure is not None:
            with single_metric(
                name="ArchiveFailures", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
            ) as metric:
                metric.add_dimension(name="archive", value=outcome.archive_id)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
