# teemsd configuration (src/server/config.c): every setting's valid and invalid forms.
teems_unit_test(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c LIBS teems_server_config)
