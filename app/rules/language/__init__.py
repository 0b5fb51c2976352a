"""The rule language: reading rules/ with line and column, the declarations, the catalog, the model and the version."""
