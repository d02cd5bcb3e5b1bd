"""The thin HTTP layer: FastAPI routes, dependencies, errors, middleware, schemas and the demo page."""
