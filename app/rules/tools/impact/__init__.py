"""`permctl rules impact`: replay recorded decisions through a proposed set, the catalog's effect, the report."""
