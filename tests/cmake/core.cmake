# Wire codec, spool and end-to-end tests of the coordinator and workers.
dw_add_unit_test(test_wire SOURCES test_wire.c LIBS dwcommon)
dw_add_unit_test(test_spool SOURCES test_spool.c LIBS dwworker)
