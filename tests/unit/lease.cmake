# Lease module (src/core/lease.c) unit tests.
teems_unit_test(test_lease test_lease.c LIBS teems_core teems_tee)
