"""prefloop's PostgreSQL database backend (ENGINE "prefloop.postgres"): Django's, health check aside."""
