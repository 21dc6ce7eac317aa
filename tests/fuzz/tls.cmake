# Fuzz target of the RA-TLS certificate extension decoder (src/net/tls_ratls.c).
if(TARGET teems_tls)
  teems_fuzz_target(fuzz_tls_ext ${CMAKE_CURRENT_LIST_DIR}/fuzz_tls_ext.c LIBS teems_tls)
endif()
