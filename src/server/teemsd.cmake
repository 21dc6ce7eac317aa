# teemsd, the replica daemon: the libuv shell (teemsd*.c, owned here) around the replica engine
# (teems_replica, src/server/replica*.c). The shell is an object library so the tests can link
# the same code against a fake engine (tests/system/cluster.cmake: teemsd-echo).
pkg_check_modules(LIBUV REQUIRED IMPORTED_TARGET libuv)

add_library(teemsd_shell OBJECT teemsd.c teemsd_client.c teemsd_peer.c teemsd_stream.c
            teemsd_log.c)
target_link_libraries(teemsd_shell PUBLIC teems_net teems_server_config teems_core teems_common
                      PkgConfig::LIBUV Threads::Threads)

# TLS needs the TLS engine (teems_tls); without it teemsd runs only in the plaintext
# development mode (client_tls = off, every address loopback).
if(TARGET teems_tls)
  target_link_libraries(teemsd_shell PUBLIC teems_tls)
  target_compile_definitions(teemsd_shell PRIVATE TEEMSD_HAVE_TLS)
endif()

# The engine's library may be declared after this file is included: decide at the end of the
# directory.
function(teemsd_define_executable)
  if(TARGET teems_replica)
    add_executable(teemsd)
    target_link_libraries(teemsd PRIVATE teemsd_shell teems_replica)
    set_target_properties(teemsd PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
  endif()
endfunction()
cmake_language(DEFER CALL teemsd_define_executable)
