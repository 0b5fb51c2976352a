"""Services: one transaction each over a unit of work; plain typed values in and out (no Flask, no marshmallow)."""
