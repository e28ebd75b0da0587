# Package test (label `package`): builds the Debian package in a Release build
# of its own (${CMAKE_BINARY_DIR}/package-build, prefix /usr), extracts it with
# dpkg -x into a scratch root and runs the extracted gateway from a temporary
# directory, so only the package's Lua library and policies can be used.
find_program(PACKAGE_TEST_PYTHON3 NAMES python3 REQUIRED)
add_test(NAME package.deb
         COMMAND ${PACKAGE_TEST_PYTHON3} -m unittest -v test_package
         WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/package)
set_tests_properties(package.deb PROPERTIES
  TIMEOUT 600
  LABELS package
  ENVIRONMENT "CACHEGW_SOURCE_DIR=${CMAKE_SOURCE_DIR};PACKAGE_BUILD_DIR=${CMAKE_BINARY_DIR}/package-build;CMAKE_COMMAND=${CMAKE_COMMAND};CPACK_COMMAND=${CMAKE_CPACK_COMMAND};EXAMPLE_API_BIN=$<TARGET_FILE:example-api>")
