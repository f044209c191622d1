# Sandbox overhead benchmark (bubblewrap and podman); run as root:
#   build/tests/bench/sandbox_bench 100
add_executable(sandbox_bench
    ${CMAKE_CURRENT_SOURCE_DIR}/sandbox_bench.c
    ${CMAKE_SOURCE_DIR}/worker/dw_sandbox.c
    ${CMAKE_SOURCE_DIR}/worker/dw_cgroup.c
    ${CMAKE_SOURCE_DIR}/worker/dw_container.c
    ${CMAKE_SOURCE_DIR}/tests/sandbox_helpers.c)
target_include_directories(sandbox_bench PRIVATE ${CMAKE_SOURCE_DIR}/worker ${CMAKE_SOURCE_DIR}/tests)
target_link_libraries(sandbox_bench PRIVATE dwcommon)
