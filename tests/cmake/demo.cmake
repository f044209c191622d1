# The bundled demo suite: generate it and check every task's repository,
# gold patch, hidden tests and the stub agent (needs git, cc, make,
# python3 and node).
add_test(NAME demo_suite COMMAND ${CMAKE_SOURCE_DIR}/tests/fixtures/demo/check-demo-suite)
set_tests_properties(demo_suite PROPERTIES TIMEOUT 120
    ENVIRONMENT "DW_SOURCE_DIR=${CMAKE_SOURCE_DIR};DW_BUILD_DIR=${CMAKE_BINARY_DIR}")
