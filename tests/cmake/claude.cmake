# Claude Code CLI integration: stream-json parser, outcome classification,
# model gateway, and end-to-end runs of the real CLI against the scripted
# model server (tests/modelserver).

dw_add_unit_test(streamjson SOURCES test_streamjson.c LIBS dwworker TIMEOUT 30)

# Runs the real CLI when DW_CLAUDE names its binary (deploy/install-claude-code.sh
# prints the path); exits 77 (skipped) otherwise.
dw_add_unit_test(claude SOURCES test_claude.c LIBS dwworker TIMEOUT 240)
add_dependencies(claude driftwatch-modelserver)
set_tests_properties(claude PROPERTIES SKIP_RETURN_CODE 77)

dw_add_unit_test(gateway SOURCES test_gateway.c LIBS dwworker TIMEOUT 60)
add_dependencies(gateway driftwatch-modelserver)
