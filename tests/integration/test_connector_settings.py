"""Connector settings that had no test proving their effect, each against a real server on loopback:

- `client-credentials.auth-method: client_secret_post`: the client authenticates in the form body, which a token
  endpoint that accepts only that method answers (and the default, HTTP Basic, is refused by it); node's
  oidc-provider issues tokens to either method;
- `dicom-web-connector.max-uids-per-request`: UID lists are split (study UIDs) or left to the service's own
  filtering (series / object UIDs) beyond that many per QIDO request, against Orthanc, with the same answer.

The DICOM timeouts (`network-timeout-seconds`) and `tls.verify-hostname` are proven in test_dicom_connector.py.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from weasis_link import config as cfg
from weasis_link.connectors.dicomweb import DicomWebConnector
from weasis_link.errors import ArchiveError
from weasis_link.oauth_client import ClientCredentialsTokenProvider
from weasis_link_dev.archive_query import ask_archive, instance_uids
from weasis_link_dev.loopback_http import Answer, LoopbackServer, Request, forward
from weasis_link_dev.oidc_provider import Client
from weasis_link_dev.orthanc import OrthancServer
from weasis_link_dev.pytest_oidc import OidcProviderFactory
from weasis_link_dev.synthetic_studies import standard_dataset

pytestmark = pytest.mark.integration
STANDARD = standard_dataset()
CLIENT_ID, CLIENT_SECRET = "weasis-link", "s3cret:with/odd&chars"
TOKEN_PATH = "/oauth2/token"


# ------------------------------------------------------------------------------------ client_secret_post
def post_only_token_endpoint(request: Request) -> Answer:
    """An OAuth2 token endpoint registered for `client_secret_post` only (RFC 6749 §2.3.1): the client id and
    secret must come in the form body; a request carrying HTTP Basic credentials is refused as invalid_client."""
    form = request.form()
    ok = (
        request.header("Authorization") is None
        and request.header("Content-Type") == "application/x-www-form-urlencoded"
        and form.get("grant_type") == "client_credentials"
        and (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)
    )
    if not ok:
        return Answer.json({"error": "invalid_client"}, 401)
    return Answer.json({"access_token": "service.token.value", "token_type": "Bearer", "expires_in": 600})


@pytest.fixture
def post_only_endpoint() -> Iterator[LoopbackServer]:
    with LoopbackServer(post_only_token_endpoint) as endpoint:
        yield endpoint


def sent(endpoint: LoopbackServer) -> list[tuple[dict[str, str], str | None]]:
    """(form, Authorization header) of every token request."""
    return [(r.form(), r.header("Authorization")) for r in endpoint.requests]


def credentials(url: str, **extra: str) -> cfg.ClientCredentialsConfig:
    return cfg.ClientCredentialsConfig.model_validate(
        {"token-url": url, "client-id": CLIENT_ID, "client-secret": CLIENT_SECRET, "scope": "pacs.read", **extra}
    )


def test_client_secret_post_sends_the_credentials_in_the_form(post_only_endpoint: LoopbackServer) -> None:
    now = time.time()
    token = ClientCredentialsTokenProvider(
        credentials(post_only_endpoint.url(TOKEN_PATH), **{"auth-method": "client_secret_post"})
    ).token()
    assert token.value == "service.token.value" and token.expires_at >= now + 600
    [(form, authorization)] = sent(post_only_endpoint)
    assert authorization is None  # not also in a header: RFC 6749 forbids using two methods at once
    assert form == {
        "grant_type": "client_credentials",
        "scope": "pacs.read",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,  # sent as is: form-encoding protects the ':', '/' and '&'
    }


def test_the_default_basic_method_is_refused_by_a_post_only_endpoint(
    post_only_endpoint: LoopbackServer,
) -> None:
    with pytest.raises(ArchiveError) as refused:
        ClientCredentialsTokenProvider(credentials(post_only_endpoint.url(TOKEN_PATH))).token()
    assert refused.value.kind == "refused" and "invalid_client" in refused.value.detail
    assert CLIENT_SECRET not in refused.value.detail
    [(form, authorization)] = sent(post_only_endpoint)
    assert authorization is not None and authorization.startswith("Basic ")
    assert "client_secret" not in form  # the default puts the secret in the header only
    decoded = base64.b64decode(authorization.removeprefix("Basic ")).decode()
    assert decoded == "weasis-link:s3cret%3Awith%2Fodd%26chars"


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_each_auth_method_gets_a_token_from_node_oidc_provider(
    oidc_provider_factory: OidcProviderFactory, method: str
) -> None:
    """Interoperability with a real identity provider (node's oidc-provider), the client registered for the
    method. oidc-provider 9 accepts either secret method whatever is registered, so the refusal of the other
    method is proven against post_only_token_endpoint above."""
    client = Client("weasis-link-" + method.rsplit("_", 1)[1], auth_method=method)
    provider = oidc_provider_factory([client], {})
    grant = cfg.ClientCredentialsConfig.model_validate(
        {
            "token-url": f"{provider.issuer}/token",
            "client-id": client.client_id,
            "client-secret": client.secret,
            "scope": "weasis.launch",
            "auth-method": method,
        }
    )
    token = ClientCredentialsTokenProvider(grant).token()
    assert token.value and token.expires_at > time.time() + 60
    wrong = grant.model_copy(update={"client_secret": SecretStr("not-the-secret")})
    with pytest.raises(ArchiveError) as refused:
        ClientCredentialsTokenProvider(wrong).token()
    assert refused.value.kind == "refused" and "invalid_client" in refused.value.detail


# ------------------------------------------------------------------------------------ max-uids-per-request
@pytest.fixture
def proxy(orthanc: OrthancServer) -> Iterator[LoopbackServer]:
    """A loopback proxy in front of Orthanc's DICOMweb: forwards every GET unchanged and records its target."""

    def to_orthanc(request: Request) -> Answer:
        return forward(orthanc.http_url, request, {"Accept": request.header("Accept") or "*/*"})

    with LoopbackServer(to_orthanc) as recording:
        yield recording


def taken(proxy: LoopbackServer) -> list[tuple[str, dict[str, str]]]:
    """(path, query parameters) of the requests since the last call."""
    return [(r.path, r.query) for r in proxy.take()]


def instances_found(url: str, query: str, **settings: Any) -> set[str]:
    connector = DicomWebConnector("pacs", cfg.DicomWebConnectorConfig.model_validate({"url": url, **settings}))
    return instance_uids(ask_archive(connector, query, seconds=30)[0])


def test_max_uids_per_request_splits_the_study_uid_list(proxy: LoopbackServer) -> None:
    studies = list(dict.fromkeys(r.study_instance_uid for r in STANDARD))[:5]
    query = "studyUID=" + ",".join(studies)
    truth = {r.sop_instance_uid for r in STANDARD if r.study_instance_uid in studies}

    assert instances_found(proxy.url("/dicom-web"), query, **{"max-uids-per-request": 2}) == truth
    lists = [unquote(q["StudyInstanceUID"]).split(",") for path, q in taken(proxy) if path.endswith("/studies")]
    assert sorted(len(uids) for uids in lists) == [1, 2, 2]  # 5 UIDs, at most 2 per request
    assert sorted(uid for uids in lists for uid in uids) == sorted(studies)

    assert instances_found(proxy.url("/dicom-web"), query) == truth  # the default (40): one study-level request
    lists = [unquote(q["StudyInstanceUID"]).split(",") for path, q in taken(proxy) if path.endswith("/studies")]
    assert lists == [studies]


def test_beyond_max_uids_per_request_series_uids_are_filtered_by_the_service(proxy: LoopbackServer) -> None:
    study = STANDARD[0].study_instance_uid
    series = list(dict.fromkeys(r.series_instance_uid for r in STANDARD if r.study_instance_uid == study))
    assert len(series) >= 2, "the standard dataset has studies of several series"
    query = f"studyUID={study}&seriesUID={','.join(series[:2])}"
    truth = {r.sop_instance_uid for r in STANDARD if r.series_instance_uid in series[:2]}

    assert instances_found(proxy.url("/dicom-web"), query, **{"max-uids-per-request": 1}) == truth
    assert all("SeriesInstanceUID" not in q for _, q in taken(proxy))  # two UIDs do not fit: not sent

    assert instances_found(proxy.url("/dicom-web"), query, **{"max-uids-per-request": 2}) == truth
    sent = [unquote(q["SeriesInstanceUID"]) for path, q in taken(proxy) if "SeriesInstanceUID" in q]
    assert sent and all(s == ",".join(series[:2]) for s in sent)  # they fit: the PACS filters
