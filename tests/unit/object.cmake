# Unit tests of libteems' object API (src/client/object*.c) against a fake RESP service.
if(TARGET teems_object)
  teems_unit_test(test_object test_object.c LIBS teems_object)
endif()
