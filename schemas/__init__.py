"""JSON Schemas for gateway.yaml and routes.d/*.yaml, shipped as package data."""
