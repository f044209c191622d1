# Claude Code CLI integration: stream-json parser, outcome classification,
# model gateway, and end-to-end runs of the real CLI against the scripted
# model server (tests/modelserver).

dw_add_unit_test(streamjson SOURCES test_streamjson.c LIBS dwworker TIMEOUT 30)
