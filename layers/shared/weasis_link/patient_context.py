"""Patient context: a token launched for one patient (SMART App Launch's `patient`) sees that patient only.

Per trusted issuer (`auth.issuers[].patient-context`, weasis_link.identity):

```yaml
auth:
  issuers:
    - issuer: https://ehr.hospital.example/fhir
      audiences: [weasis-link]
      patient-context:
        claim: patient               # dotted path into the claims
        form: id-issuer              # the claim is "ID^^^Issuer"; or bare, with assigning-authority: <issuer>
        required: false              # true: a token without the claim is 403 patient-context-required
```

When the token carries a patient context (SMART Imaging Access, draft: 403 on a mismatch, a search silently omits
what may not be seen, never a partial study):
1. Before any query (`confine_pairs`): a `patientID` that cannot be the context patient (another ID or issuer) is 403
   `patient-not-in-context`. A request with no key (filters only) or only `patientID` is asked for the context
   patient exactly (a wildcard stays inside it). A request with study/series/object UIDs or accession numbers is
   asked as given, and judged on what the archives answer (step 2): a UID of another patient must be refused, not
   answered with an empty manifest.
2. After every connector's answer (`confine_studies`): a study of another patient found by a study/series/object UID
   is 403; found by an accession number (which may be shared), it is silently left out, and 403 only when nothing of
   the context patient remains; any other stray study is left out.
3. Before any manifest is stored (`check_manifest`): every <Patient> of the document must be the context patient
   (built, resolved or uploaded alike) — the last line, independent of the connectors. A built manifest's patients
   are read from every study of the trees it was written from (audit.summarize_archives), an uploaded one's from
   the document itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from weasis_link.claims_access import claim_value
from weasis_link.criteria import KEY_PARAMETERS, PatientIdentifier, QueryCriteria, wildcard_match
from weasis_link.errors import PatientContextRequired, PatientNotInContext
from weasis_link.study_tree import PatientKey, Study

UID_KEYS: Final = ("studyUID", "seriesUID", "objectUID")
_WILDCARD: Final = re.compile(r"[*?]")


class PatientContextConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    claim: str = Field(default="patient", min_length=1, max_length=256)
    form: Literal["id-issuer", "bare"] = "id-issuer"
    assigning_authority: str | None = Field(default=None, alias="assigning-authority", min_length=1, max_length=64)
    required: bool = False

    @model_validator(mode="after")
    def _bare_needs_an_authority(self) -> PatientContextConfig:
        # A patient is PatientID AND IssuerOfPatientID: a bare id alone would match the same id of another issuer.
        if self.form == "bare" and not self.assigning_authority:
            raise ValueError("patient-context form bare needs assigning-authority (the IssuerOfPatientID)")
        if self.form == "id-issuer" and self.assigning_authority:
            raise ValueError("patient-context assigning-authority goes with form bare only")
        return self


def patient_text(key: PatientKey) -> str:
    return f"{key.patient_id}^^^{key.issuer}" if key.issuer else key.patient_id


def context_patient(rule: PatientContextConfig | None, claims: Mapping[str, Any]) -> PatientKey | None:
    """The patient the token is confined to, or None (no rule, or an optional claim absent)."""
    if rule is None:
        return None
    value = claim_value(claims, rule.claim)
    if value is None or value == "":
        if rule.required:
            raise PatientContextRequired(f"This token has no patient context (claim {rule.claim}).")
        return None
    if not isinstance(value, str) or _WILDCARD.search(value) or len(value) > 200:
        raise PatientContextRequired(f"The token's patient context (claim {rule.claim}) is not a patient identifier.")
    if rule.form == "bare":
        return PatientKey(value, rule.assigning_authority)
    parsed = PatientIdentifier.parse(value)
    if parsed.issuer is None or not parsed.patient_id:
        raise PatientContextRequired(
            f"The token's patient context (claim {rule.claim}) must be ID^^^Issuer: a patient is an ID and its issuer."
        )
    return PatientKey(parsed.patient_id, parsed.issuer)


def _can_be(requested: PatientIdentifier, patient: PatientKey) -> bool:
    if requested.issuer is not None and requested.issuer != patient.issuer:
        return False
    return wildcard_match(requested.patient_id, patient.patient_id)


def confine_pairs(pairs: Sequence[tuple[str, str]], patient: PatientKey | None) -> list[tuple[str, str]]:
    """Step 1: the request parameters, confined to the context patient (see the module docstring)."""
    if patient is None:
        return list(pairs)
    for name, value in pairs:
        if name == "patientID" and not _can_be(PatientIdentifier.parse(value), patient):
            raise PatientNotInContext("The patient asked for is not the patient this token was issued for.")
    others = [(k, v) for k, v in pairs if k != "patientID"]
    if any(k in KEY_PARAMETERS for k, _ in others):
        return others  # UIDs / accession numbers: judged on the answers (confine_studies)
    return [("patientID", patient_text(patient)), *others]


def confine_studies(studies_by_archive: Sequence[list[Study]], criteria: QueryCriteria, patient: PatientKey) -> None:
    """Step 2, in place: every archive's studies, restricted to the context patient."""
    uid_keyed = bool(criteria.study_uids or criteria.series_uids or criteria.object_uids)
    foreign = kept = 0
    for studies in studies_by_archive:
        mine = [s for s in studies if s.patient.key == patient]
        foreign += len(studies) - len(mine)
        kept += len(mine)
        studies[:] = mine
    if foreign and (uid_keyed or kept == 0) and criteria.search_keys - {_PATIENT_KEY}:
        raise PatientNotInContext("What was asked for belongs to another patient than this token's.")


def check_manifest(patients: Sequence[str], patient: PatientKey | None) -> None:
    """Step 3: the patients (`ID^^^Issuer`) of a manifest about to be stored (no context patient: nothing to do)."""
    if patient is None:
        return
    expected = patient_text(patient)
    if any(p != expected for p in patients):
        raise PatientNotInContext("The manifest lists another patient than this token's.")


class TrustedIssuer(Protocol):
    """What this module reads of an `auth.issuers` entry (identity.TrustedIssuerConfig, which imports this module)."""

    @property
    def issuer(self) -> str: ...

    @property
    def patient_context(self) -> PatientContextConfig | None: ...

    def tenant_in(self, iss: str) -> str | None: ...


def caller_patient(
    issuer: TrustedIssuer | None, claims: Mapping[str, Any], issuers: Iterable[TrustedIssuer]
) -> PatientKey | None:
    """The patient a caller's token is confined to: by the issuer entry that accepted it, or (the builder's caller,
    rebuilt from a build request) by the entry its `iss` names."""
    iss = claims.get("iss")
    if issuer is None and isinstance(iss, str):
        issuer = next((e for e in issuers if e.issuer == iss or e.tenant_in(iss)), None)
    return context_patient(issuer.patient_context if issuer is not None else None, claims)


_PATIENT_KEY: Final = KEY_PARAMETERS["patientID"]
