# Job runner integration: agent and grading runs through the built-in
# sandbox hook (bubblewrap), and agent kind "claude-code" running the real
# CLI through the sandbox and the model gateway against the scripted model
# server. Each test exits 77 (skipped) when it lacks root, bubblewrap or
# the CLI.
dw_add_unit_test(test_jobrun_sandbox SOURCES test_jobrun_sandbox.c LIBS dwworker TIMEOUT 120)
set_tests_properties(test_jobrun_sandbox PROPERTIES SKIP_RETURN_CODE 77)
dw_add_unit_test(test_jobrun_claude SOURCES test_jobrun_claude.c LIBS dwworker TIMEOUT 120)
set_tests_properties(test_jobrun_claude PROPERTIES SKIP_RETURN_CODE 77)
add_dependencies(test_jobrun_claude driftwatch-modelserver)
