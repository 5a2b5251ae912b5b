"""prefloop's PostgreSQL database backend (ENGINE "prefloop.postgres"): Django's, with a cheaper
health check and query-log text for prepared statements (base.py)."""
