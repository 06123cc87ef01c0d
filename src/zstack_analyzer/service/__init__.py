"""HTTP service: a FastAPI app over the library (``create_app(settings)``).

The service imports the library, never the reverse; nothing is built at import
time, so tests and entry points each construct their own app from settings.
"""
