# The blocking RESP client connection (conn.h): plaintext or TLS 1.3 over a socket, replies read
# with hiredis' reader. Used by the teems CLI, the system tests and the object layer.
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
add_library(teems_conn STATIC conn.c)
target_link_libraries(teems_conn PUBLIC teems_common OpenSSL::SSL OpenSSL::Crypto
                      PkgConfig::HIREDIS Threads::Threads)
