teems_unit_test(test_quorum test_quorum.c LIBS teems_core)
