# Fuzz targets of tests/sim (included by tests/fuzz/CMakeLists.txt).
teems_fuzz_target(fuzz_history ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_history.c LIBS teems_lincheck)
