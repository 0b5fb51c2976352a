"""Persistence: typed models, repositories, the unit of work and the tenant-config cache."""
