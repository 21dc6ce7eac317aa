# TLS 1.3 engine over memory BIOs (src/net/tls.h; docs/SECURITY.md "Channels"): attested
# replica-to-replica channels (RA-TLS), the service CA and the client-facing service context,
# and the client context.
add_library(teems_tls STATIC ${CMAKE_CURRENT_LIST_DIR}/tls.c ${CMAKE_CURRENT_LIST_DIR}/tls_ratls.c
                             ${CMAKE_CURRENT_LIST_DIR}/tls_ca.c ${CMAKE_CURRENT_LIST_DIR}/tls_x509.c)
target_link_libraries(teems_tls PUBLIC teems_tee teems_common OpenSSL::SSL OpenSSL::Crypto)
