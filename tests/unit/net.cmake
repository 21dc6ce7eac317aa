# RESP front end (src/net): parser, encoder, command table. hiredis is the client-side reader
# that checks the encoder's output the way real clients read it.
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
teems_unit_test(test_resp ${CMAKE_CURRENT_LIST_DIR}/test_resp.c LIBS teems_net PkgConfig::HIREDIS)
teems_unit_test(test_resp_commands ${CMAKE_CURRENT_LIST_DIR}/test_resp_commands.c LIBS teems_net
                 PkgConfig::HIREDIS)
