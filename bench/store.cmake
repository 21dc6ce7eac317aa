# bench-store: sealed WAL append throughput against raw write+fdatasync (run bench/store.sh).
add_executable(bench-store ${CMAKE_CURRENT_LIST_DIR}/bench_store.c)
target_link_libraries(bench-store PRIVATE teems_store)
set_target_properties(bench-store PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
target_link_libraries(bench-store PRIVATE Threads::Threads)
