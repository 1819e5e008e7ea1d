"""Tests on the production topologies of SPEC §12 (Redis Cluster, TLS Redis with ACL users, PgBouncer)."""
