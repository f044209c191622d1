# Sandbox tests: bubblewrap containment, cgroup layouts, podman backend.
# They compile the sandbox sources directly so they do not depend on the
# rest of the worker library. Containment tests need root; they exit 77
# (skipped) otherwise.
set(DW_SANDBOX_SOURCES
    ${CMAKE_SOURCE_DIR}/worker/dw_sandbox.c
    ${CMAKE_SOURCE_DIR}/worker/dw_cgroup.c
    ${CMAKE_SOURCE_DIR}/worker/dw_container.c
    ${CMAKE_SOURCE_DIR}/worker/dw_preflight.c
    ${CMAKE_CURRENT_SOURCE_DIR}/sandbox_helpers.c)

foreach(_sbx_test test_sandbox test_cgroup test_preflight test_container)
    dw_add_unit_test(${_sbx_test} SOURCES ${_sbx_test}.c ${DW_SANDBOX_SOURCES}
        LIBS dwcommon TIMEOUT 180)
    target_include_directories(${_sbx_test} PRIVATE ${CMAKE_SOURCE_DIR}/worker)
    set_tests_properties(${_sbx_test} PROPERTIES SKIP_RETURN_CODE 77 RUN_SERIAL TRUE)
endforeach()
