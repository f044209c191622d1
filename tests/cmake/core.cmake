# Wire codec, spool and end-to-end tests of the coordinator and workers.
dw_add_unit_test(test_wire SOURCES test_wire.c LIBS dwcommon)
dw_add_unit_test(test_spool SOURCES test_spool.c LIBS dwworker)

# End-to-end scripts run the real coordinator and workers against the
# PostgreSQL fixture, each in its own database.
function(dw_add_e2e_test name script timeout)
    add_test(NAME ${name} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/${script})
    set_tests_properties(${name} PROPERTIES TIMEOUT ${timeout} FIXTURES_REQUIRED db
        ENVIRONMENT "${DW_TEST_PGENV};DW_SOURCE_DIR=${CMAKE_SOURCE_DIR};DW_BUILD_DIR=${CMAKE_BINARY_DIR}")
endfunction()
dw_add_e2e_test(e2e_daily_run daily_run.sh 600)
dw_add_e2e_test(e2e_import_public import_public.sh 120)

add_executable(hostile_peer hostile_peer.c)
target_link_libraries(hostile_peer PRIVATE dwcommon)
dw_add_e2e_test(e2e_hostile_input hostile_input.sh 240)
