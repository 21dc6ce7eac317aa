# Lease module (src/core/lease.c) unit tests.
teems_unit_test(test_lease test_lease.c LIBS teems_core teems_tee)
# Client leases as state-machine commands (src/kv/lease_table.c).
teems_unit_test(test_lease_table test_lease_table.c LIBS teems_kv teems_core teems_common)
