# Storage fuzz targets (src/store).
teems_fuzz_target(fuzz_wal ${CMAKE_CURRENT_LIST_DIR}/fuzz_wal.c LIBS teems_store)
