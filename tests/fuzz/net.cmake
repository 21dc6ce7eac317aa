# Fuzz targets of src/net (included by tests/fuzz/CMakeLists.txt).
teems_fuzz_target(fuzz_resp ${CMAKE_CURRENT_LIST_DIR}/fuzz_resp.c LIBS teems_net)
