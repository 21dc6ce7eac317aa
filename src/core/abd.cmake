# RR-ABD registers (DESIGN.md section 6; docs/ABD.md), part of teems_core.
target_sources(teems_core PRIVATE abd_core.c abd_coord.c abd_recover.c abd_persist.c)
# Range and value digests are SHA-256 (OpenSSL EVP, hashing only: no I/O).
target_link_libraries(teems_core PRIVATE OpenSSL::Crypto)
