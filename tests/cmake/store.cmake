# Coordinator store (PostgreSQL) and the embedded PostgreSQL cluster.
dw_add_unit_test(test_store SOURCES test_store.c LIBS dwcoord DB TIMEOUT 60)
