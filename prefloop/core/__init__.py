"""What every app uses: the domain errors and their API handler, pagination, the JSON parser,
json_safe and the server-rendered pages' helpers (docs/architecture.md)."""
