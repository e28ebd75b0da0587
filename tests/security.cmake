# Security suite (issue 8): Python (standard library only) raw-socket tests in
# tests/security/ against the real binary, a reflecting upstream and, where a
# test needs one, a private redis-server.  One ctest entry per test_*.py.
find_program(PYTHON3 NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT PYTHON3)
  find_program(PYTHON3 NAMES python3 REQUIRED)
endif()
file(GLOB SECURITY_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/security/test_*.py)
foreach(src ${SECURITY_TESTS})
  get_filename_component(name ${src} NAME_WE)
  add_test(NAME security.${name}
           COMMAND ${PYTHON3} -m unittest -v ${name}
           WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/security)
  set_tests_properties(security.${name} PROPERTIES
    TIMEOUT 240
    LABELS security
    ENVIRONMENT "CACHEGW_BIN=$<TARGET_FILE:cachegw>;EXAMPLE_API_BIN=$<TARGET_FILE:example-api>;CACHEGW_SOURCE_DIR=${CMAKE_SOURCE_DIR};CACHEGW_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach()

# The resource tests measure RSS and latency under load: run them alone so that
# other tests' load cannot skew their bounds (and theirs cannot skew others').
if(TEST security.test_resources)
  set_tests_properties(security.test_resources PROPERTIES RUN_SERIAL TRUE)
endif()
