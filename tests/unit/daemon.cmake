# The replica engine inside teemsd (src/server/replica.h): three in-process replicas on real
# sealed WALs and the sim platform, frames delivered by the test (tests/unit/test_replica.c).
# One binary, three groups, each its own ctest entry so that each stays a few seconds long.
if(TARGET teems_replica)
  # The in-process cluster harness (replica_harness.h) shared by test_replica,
  # test_replica_snap and test_replica_abd (replica_abd.cmake).
  add_library(teems_replica_harness STATIC ${CMAKE_CURRENT_LIST_DIR}/replica_harness.c)
  target_link_libraries(teems_replica_harness PUBLIC teems_replica PkgConfig::CMOCKA)
  add_executable(test_replica ${CMAKE_CURRENT_LIST_DIR}/test_replica.c)
  target_link_libraries(test_replica PRIVATE teems_replica_harness teems_replica PkgConfig::CMOCKA)
  foreach(group cluster faults restart)
    add_test(NAME test_replica_${group} COMMAND test_replica ${group})
    set_tests_properties(test_replica_${group} PROPERTIES LABELS unit TIMEOUT 120)
  endforeach()
  add_executable(test_replica_snap ${CMAKE_CURRENT_LIST_DIR}/test_replica_snap.c)
  target_link_libraries(test_replica_snap PRIVATE teems_replica_harness teems_replica
                        PkgConfig::CMOCKA)
  foreach(group take install fail alloc rollback tamper total)
    add_test(NAME test_replica_snap_${group} COMMAND test_replica_snap ${group})
    set_tests_properties(test_replica_snap_${group} PROPERTIES LABELS unit TIMEOUT 120)
  endforeach()
endif()
include(${CMAKE_CURRENT_LIST_DIR}/replica_abd.cmake OPTIONAL) # engine = abd (test_replica_abd.c)
