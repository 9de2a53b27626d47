"""Tarmac's REST face: routes, auth, request and response schemas, the OpenAPI document."""
