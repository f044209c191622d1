# Worker job runner: process supervision, test log parsing, git workspaces
# and end-to-end attempts on a throwaway repository.
dw_add_unit_test(test_proc SOURCES test_proc.c LIBS dwworker TIMEOUT 60)
dw_add_unit_test(test_testlog SOURCES test_testlog.c LIBS dwworker TIMEOUT 30)
dw_add_unit_test(test_jobrun SOURCES test_jobrun.c LIBS dwworker TIMEOUT 120)
dw_add_unit_test(test_jobrun_demo SOURCES test_jobrun_demo.c LIBS dwworker TIMEOUT 240)
