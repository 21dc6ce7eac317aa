teems_unit_test(test_common test_common.c LIBS teems_common)
