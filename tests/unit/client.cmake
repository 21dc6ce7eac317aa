# Unit tests of the object layer (src/client/): blob encryption, streaming in bounded memory,
# blob stores, store URLs and the blob cache.
teems_unit_test(test_obj_crypto test_obj_crypto.c LIBS teems_client)
teems_unit_test(test_obj_stream test_obj_stream.c LIBS teems_client)
teems_unit_test(test_obj_store test_obj_store.c LIBS teems_client)
