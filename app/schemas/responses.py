"""Response schemas: used to document the API (OpenAPI), not to build responses."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class PermissionChangeDoc(Schema):
    """One change as callers send it; the rules, not this schema, judge each field."""

    permission_type = fields.String(metadata={"description": "{product}.{market} or {group}.{name}",
                                              "example": "stock.US"})
    permission_status = fields.String(metadata={"enum": ["open", "close"], "example": "open"})


class UpdateData(Schema):
    """data of an update answer."""

    failure_index = fields.Integer(required=True, metadata={"description": "index of the offending change; 0 "
                                                                           "in every other case"})
    rule_id = fields.String(metadata={"description": "the rule that rejected the change (pre-validation only)"})


class UpdateEnvelope(Schema):
    """The envelope of every update answer."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(UpdateData, required=True)


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


class ReadEnvelope(Schema):
    """A successful read."""

    code = fields.Integer(required=True, validate=validate.Equal(0))
    message = fields.String(required=True)
    data = fields.Nested(ReadData, required=True)


class ErrorData(Schema):
    """data of an error outside the update endpoint (empty)."""


class ErrorEnvelope(Schema):
    """Any other error answer."""

    code = fields.Integer(required=True)
    message = fields.String(required=True)
    data = fields.Nested(ErrorData, required=True)
