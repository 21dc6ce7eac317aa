# Storage tests (src/store): the VFS and the memvfs crash/rollback model, the sealed WAL,
# sealed snapshots. test_store_util.c holds helpers shared by the three.
foreach(t vfs wal snapshot)
  teems_unit_test(test_store_${t} ${CMAKE_CURRENT_LIST_DIR}/test_store_${t}.c
                  ${CMAKE_CURRENT_LIST_DIR}/test_store_util.c LIBS teems_store)
endforeach()
