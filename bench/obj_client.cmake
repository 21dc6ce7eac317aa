# bench-obj-client: puts and gets through one long-lived libteems client (run by
# bench/objects.sh beside the `teems obj` command rows).
if(TARGET teems_object)
  add_executable(bench-obj-client ${CMAKE_CURRENT_LIST_DIR}/obj_client.c)
  target_link_libraries(bench-obj-client PRIVATE teems_object)
  set_target_properties(bench-obj-client PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
endif()
