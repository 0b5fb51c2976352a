"""The performance benchmark (issue 5): the service beside a bare WSGI baseline and two peer evaluators.

Run it with ``.venv/bin/python -m bench.run [--quick] [--database-url URL] [--redis-url URL]``.
"""
