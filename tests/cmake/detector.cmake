# Statistics toolbox and the regression detector.
dw_add_unit_test(test_stats SOURCES test_stats.c LIBS dwcommon TIMEOUT 30)
dw_add_unit_test(test_detector SOURCES test_detector.c LIBS dwcoord TIMEOUT 30)
dw_add_unit_test(test_detector_store SOURCES test_detector_store.c LIBS dwcoord DB TIMEOUT 30)
