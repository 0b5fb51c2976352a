"""Request schemas (marshmallow)."""
