# engine = abd in the replica engine (src/server/replica_abd.c): three in-process replicas,
# tests/unit/test_replica_abd.c, five groups (disk: the storage steps on memvfs; snapcrash:
# a power loss at every sync of a snapshot, then the real replica restarts on what survived).
if(TARGET teems_replica)
  add_executable(test_replica_abd ${CMAKE_CURRENT_LIST_DIR}/test_replica_abd.c)
  target_link_libraries(test_replica_abd PRIVATE teems_replica_harness teems_replica
                        PkgConfig::CMOCKA)
  foreach(group basic restart snap snapcrash disk)
    add_test(NAME test_replica_abd_${group} COMMAND test_replica_abd ${group})
    set_tests_properties(test_replica_abd_${group} PROPERTIES LABELS unit TIMEOUT 120)
  endforeach()
endif()
