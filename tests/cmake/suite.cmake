# Task-suite loader: real data files under tests/data, no database.
dw_add_unit_test(suite SOURCES test_suite.c LIBS dwcommon TIMEOUT 60)
