# Monte Carlo validation of the regression detector (run by hand; see
# docs/benchmarks.md). Build in a Release tree for meaningful timings.
add_executable(detector_bench ${CMAKE_CURRENT_SOURCE_DIR}/detector_bench.c)
target_link_libraries(detector_bench PRIVATE dwcoord)
