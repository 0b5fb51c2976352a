"""Response schemas: they document the answers (OpenAPI) and tests hold real answers to them."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class UpdateData(Schema):
    """data of an update answer."""

    failure_index = fields.Integer(
        required=True, metadata={"description": "index of the offending change; 0 in every other case"}
    )
    rule_id = fields.String(metadata={"description": "the rule that rejected the change (pre-validation only)"})


class UpdateEnvelope(Schema):
    """The envelope of every update answer."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(UpdateData, required=True)


class AttributeWarningView(Schema):
    """An attribute the upsert named that was accepted but not stored: it is declared deprecated."""

    attribute = fields.String(required=True, metadata={"description": "the attribute's name"})
    message = fields.String(
        required=True,
        metadata={"description": "e.g. attribute 'kyc_level' is deprecated and was not stored (and the note, if any)"},
    )


class UpsertData(Schema):
    """data of a successful upsert: the account as stored now, and what the request did."""

    account_no = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "deregistered"]))
    attributes = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    result = fields.String(
        required=True,
        validate=validate.OneOf(["created", "updated", "unchanged"]),
        metadata={"description": "unchanged: the account already was as asked (nothing written, no audit row)"},
    )
    warnings = fields.List(
        fields.Nested(AttributeWarningView),
        metadata={
            "description": "present only when the request named attributes rules/attributes.yaml declares deprecated: "
            "each was accepted but not stored (stop sending it)"
        },
    )


class UpsertEnvelope(Schema):
    """A successful upsert."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(UpsertData, required=True)


class PermissionView(Schema):
    """One catalog value as the account holds it."""

    permission_type = fields.String(required=True)
    permission_status = fields.String(required=True, validate=validate.OneOf(["open", "close"]))
    updated_at = fields.DateTime(required=True, allow_none=True)


class ReadData(Schema):
    """data of a successful read."""

    account_no = fields.String(required=True)
    account_status = fields.String(required=True, validate=validate.OneOf(["active", "deregistered"]))
    permissions = fields.List(fields.Nested(PermissionView), required=True)
    attributes = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        required=True,
        metadata={"description": "the account's attributes (names declared in rules/attributes.yaml); {} when none"},
    )


class ReadEnvelope(Schema):
    """A successful read."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(ReadData, required=True)


class EmptyData(Schema):
    """data with nothing in it."""


class EmptyEnvelope(Schema):
    """An envelope whose data is empty: /healthz, and errors outside the update endpoint."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(EmptyData, required=True)


class ReadinessData(Schema):
    """data of /readyz: no tenant data, only the state of each dependency."""

    database = fields.String(
        required=True,
        metadata={
            "description": "ok; unreachable (the error's kind); or the schema is behind the code (both revisions)"
        },
    )
    schema_revision = fields.String(
        required=True,
        allow_none=True,
        metadata={"description": "the Alembic revision the database is at; null: never migrated or unreachable"},
    )
    code_revision = fields.String(required=True, metadata={"description": "the revision the code's migrations end at"})
    rule_set_version = fields.String(
        required=True, allow_none=True, metadata={"description": "the live rule set's content hash; null: none loaded"}
    )
    published_version = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "the stored rule-set version this worker runs (its id: the hash of every file of the set); "
            "null: none loaded"
        },
    )
    live_version = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "the stored version the live pointer (the latest publication) names; when it is not "
            "published_version, last_reload_error says why it is not run. null: not read yet"
        },
    )
    last_reload_error = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "why the set the live pointer names is not the one that runs (not authorized, does not "
            "lint, fails its cases, or the publications could not be read), if it is not"
        },
    )
    failing_cases = fields.List(
        fields.String(),
        required=True,
        metadata={
            "description": "the regression cases (rules/cases/) that refused the last reload, by name; "
            "[] when it was taken or refused for another reason. The last good rule set keeps serving."
        },
    )
    redis = fields.String(required=True, metadata={"description": "never decides readiness"})


class ReadinessEnvelope(Schema):
    """The answer of /readyz."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(ReadinessData, required=True)
