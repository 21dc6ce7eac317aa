# Fuzz target of src/server's configuration parser (included by tests/fuzz/CMakeLists.txt).
teems_fuzz_target(fuzz_config ${CMAKE_CURRENT_LIST_DIR}/fuzz_config.c LIBS teems_server_config)
