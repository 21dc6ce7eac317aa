# RR-ABD core (src/core/abd.h): in-test cluster harness + scenarios; histories checked with
# teems_lincheck (tests/sim).
teems_unit_test(test_abd test_abd.c abd_harness.c LIBS teems_core teems_lincheck)
# The configuration lease of ABD coordinators (src/core/abd_lease.c): S15 on the same harness.
teems_unit_test(test_abd_lease test_abd_lease.c abd_harness.c LIBS teems_core teems_lincheck)
