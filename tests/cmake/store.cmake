# Coordinator store (PostgreSQL) and the embedded PostgreSQL cluster.
dw_add_unit_test(test_store SOURCES test_store.c LIBS dwcoord DB TIMEOUT 60)
dw_add_unit_test(test_pgembed SOURCES test_pgembed.c LIBS dwcoord TIMEOUT 180)
