# Fuzz target of src/kv (included by tests/fuzz/CMakeLists.txt).
teems_fuzz_target(fuzz_kv ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_kv.c LIBS teems_kv)
