# Scripted Anthropic Messages API server used by the Claude Code end-to-end
# tests and by demo runs that need no real model.
add_executable(driftwatch-modelserver ${CMAKE_SOURCE_DIR}/tests/modelserver/modelserver.c)
target_link_libraries(driftwatch-modelserver PRIVATE PkgConfig::MHD PkgConfig::JANSSON
    Threads::Threads)
install(TARGETS driftwatch-modelserver RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# Tests find it as $DW_BUILD_DIR/driftwatch-modelserver.
set_target_properties(driftwatch-modelserver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})

dw_add_unit_test(modelserver SOURCES test_modelserver.c LIBS dwcommon PkgConfig::CURL TIMEOUT 60)
add_dependencies(modelserver driftwatch-modelserver)
