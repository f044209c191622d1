# Forty simulated days of the fast synthetic suite through the coordinator,
# two local workers and the stub agent, with a 10-point drop from day 30
# (tests/e2e/detector_40_days.sh explains the design). dw_add_e2e_test comes
# from core.cmake, which sorts before this fragment.
dw_add_e2e_test(e2e_detector_40_days detector_40_days.sh 2400)
# The longest test: start it first so it overlaps the rest of the suite.
set_tests_properties(e2e_detector_40_days PROPERTIES COST 10000)
