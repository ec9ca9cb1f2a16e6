"""Library code kept off the cold path by weasis_link.lazy_imports, each in a fresh interpreter as at cold start:
- cryptography.x509, which PyJWT imports at the top of jwt.algorithms, is executed only when used: tokens still
  verify, and a certificate still loads when PyJWT or anyone asks for one;
- Powertools' event_handler package __init__ (every resolver, asyncio) runs only for a name we do not take from
  its submodules: the resolver the API uses is the same class, and the package's other names still work;
- Powertools' data_classes package __init__ (some forty event classes) likewise: the resolvers get the same event
  classes, and the package's other names still work;
- pydantic's plugin discovery (a scan of every distribution's metadata) is off with the PYDANTIC_DISABLE_PLUGINS
  value template.yaml sets for every function."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CHILD = r"""
import json, sys
import weasis_link.lazy_imports  # first, as functions/api/app.py does
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
token = jwt.encode({"sub": "u"}, key, algorithm="RS256", headers={"kid": "k"})
jwk = jwt.PyJWK(json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())) | {"kid": "k"}, "RS256")
claims = jwt.decode(token, jwk.key, algorithms=["RS256"])
executed_after_decode = "cryptography.x509.base" in sys.modules

from cryptography import x509
certificate_loader = x509.load_pem_x509_certificate  # the first attribute access executes the module
print(json.dumps({
    "claims": claims,
    "executed_after_decode": executed_after_decode,
    "executed_after_use": "cryptography.x509.base" in sys.modules,
    "same_module": jwt.algorithms.x509 is x509,
    "loader": certificate_loader.__name__,
}))
"""


def test_pyjwt_verifies_without_executing_x509_and_x509_still_works_when_used() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(done.stdout)
    assert report["claims"] == {"sub": "u"}
    assert report["executed_after_decode"] is False
    assert report["executed_after_use"] is True and report["same_module"] is True
    assert report["loader"] == "load_pem_x509_certificate"


EVENT_HANDLER = r"""
import json, sys
import weasis_link.lazy_imports  # first, as functions/api/app.py does
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Depends, Response, content_types
from aws_lambda_powertools.event_handler import api_gateway, depends
from aws_lambda_powertools.event_handler.openapi.params import Query  # imports the package's Response
same = APIGatewayHttpResolver is api_gateway.APIGatewayHttpResolver and Depends is depends.Depends
same = same and Response is api_gateway.Response and content_types.APPLICATION_JSON == "application/json"
deferred = [m for m in ("aws_lambda_powertools.event_handler.appsync", "asyncio") if m in sys.modules]
import aws_lambda_powertools.event_handler as package
names = package.__all__  # a name of the __init__ itself: it runs now
from aws_lambda_powertools.event_handler import AppSyncResolver
print(json.dumps({
    "same": same,
    "deferred_loaded": deferred,
    "all": "APIGatewayHttpResolver" in names,
    "appsync": AppSyncResolver.__module__,
    "init_ran": "aws_lambda_powertools.event_handler.appsync" in sys.modules,
}))
"""


def test_the_event_handler_submodules_import_without_the_package_init_which_still_runs_when_needed() -> None:
    done = subprocess.run([sys.executable, "-c", EVENT_HANDLER], capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(done.stdout)
    assert report["same"] is True
    assert report["deferred_loaded"] == []
    assert report["all"] is True and report["init_ran"] is True
    assert report["appsync"] == "aws_lambda_powertools.event_handler.appsync"


DATA_CLASSES = r"""
import json, sys
import weasis_link.lazy_imports  # first, as functions/api/app.py does
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler import api_gateway
from aws_lambda_powertools.utilities.data_classes import api_gateway_proxy_event
same = api_gateway.APIGatewayProxyEventV2 is api_gateway_proxy_event.APIGatewayProxyEventV2
loaded = [m for m in ("aws_lambda_powertools.utilities.data_classes.kafka_event", "zipfile") if m in sys.modules]
app = APIGatewayHttpResolver()
app.get("/ping")(lambda: {"pong": True})
event = {"version": "2.0", "routeKey": "GET /ping", "rawPath": "/ping", "rawQueryString": "", "headers": {},
         "requestContext": {"http": {"method": "GET", "path": "/ping"}, "stage": "$default"}}
status = app.resolve(event, None)["statusCode"]
from aws_lambda_powertools.utilities.data_classes import KafkaEvent, event_source  # the __init__ runs now
print(json.dumps({
    "same": same,
    "deferred_loaded": loaded,
    "status": status,
    "kafka": KafkaEvent.__module__,
    "event_source": callable(event_source),
}))
"""


def test_the_event_data_classes_import_without_the_package_init_which_still_runs_when_needed() -> None:
    done = subprocess.run([sys.executable, "-c", DATA_CLASSES], capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(done.stdout)
    assert report["same"] is True and report["status"] == 200
    assert report["deferred_loaded"] == []
    assert report["kafka"] == "aws_lambda_powertools.utilities.data_classes.kafka_event"
    assert report["event_source"] is True


PLUGINS = r"""
import json
from pydantic import BaseModel
from pydantic.plugin import _loader

class Model(BaseModel):
    a: int

print(json.dumps({"valid": Model(a=1).a, "scanned": _loader._plugins is not None}))
"""


@pytest.mark.parametrize(("environment", "scanned"), [({"PYDANTIC_DISABLE_PLUGINS": "__all__"}, False), ({}, True)])
def test_the_templates_pydantic_switch_spares_the_plugin_scan(environment: dict[str, str], scanned: bool) -> None:
    # template.yaml's Globals set PYDANTIC_DISABLE_PLUGINS=__all__ (test_template.py): pydantic honours it
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"} | environment
    done = subprocess.run(
        [sys.executable, "-c", PLUGINS], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    assert json.loads(done.stdout) == {"valid": 1, "scanned": scanned}
