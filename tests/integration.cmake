# Integration tests: Python (standard library only) driving the real binaries
# over loopback sockets.  One ctest entry per tests/integration/test_*.py.
find_program(PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT PYTHON3)
  find_program(PYTHON3 NAMES python3 REQUIRED)
endif()
file(GLOB INTEGRATION_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_*.py)
foreach(src ${INTEGRATION_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME integration.${name}
           COMMAND ${PYTHON3} -m unittest -v ${name}
           WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/integration)
  set_tests_properties(integration.${name} PROPERTIES
    TIMEOUT 300
    LABELS integration
    ENVIRONMENT "CACHEGW_BIN=$<TARGET_FILE:cachegw>;EXAMPLE_API_BIN=$<TARGET_FILE:example-api>;CACHEGW_SOURCE_DIR=${CMAKE_SOURCE_DIR};CACHEGW_BUILD_DIR=${CMAKE_BINARY_DIR};REDIS_TEST_DIR=${CMAKE_BINARY_DIR}/redis-test")
endforeach()

# A million Redis entries: run it alone, so its load cannot skew the timing
# bounds other tests assert.
if(TEST integration.test_invalidation_scale)
  set_tests_properties(integration.test_invalidation_scale PROPERTIES RUN_SERIAL TRUE)
endif()
