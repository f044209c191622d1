# CURVE key files, worker allow list and loopback check (loopback sockets only).
dw_add_unit_test(test_curve SOURCES test_curve.c LIBS dwcommon TIMEOUT 60)
