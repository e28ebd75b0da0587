# Fuzzing in ctest (label "fuzz"): the libFuzzer harnesses of tests/fuzz are a
# clang project of their own (the main build uses gcc).  A setup fixture
# configures and builds it in <build>/fuzz-clang (it fails loudly when clang-14
# or libFuzzer is missing: scripts/install-deps.sh installs them); then each
# harness runs FUZZ_SECONDS (default 10) over a copy of its committed seed
# corpus, tests/fuzz/corpus/<name>/, replaying what an earlier run in this tree
# found (<build>/fuzz-clang/crashes/<name>/, so ctest's retry cannot pass a
# finding).  scripts/fuzz.sh <name|all> [seconds] is the long run.
set(FUZZ_BUILD_DIR ${CMAKE_BINARY_DIR}/fuzz-clang)
if(NOT DEFINED FUZZ_SECONDS)
  set(FUZZ_SECONDS 10)
endif()

add_test(NAME fuzz.build COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/fuzz.sh build)
set_tests_properties(fuzz.build PROPERTIES
  FIXTURES_SETUP fuzz_build
  ENVIRONMENT "FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR};FUZZ_JOBS=2"
  TIMEOUT 600
  LABELS fuzz)

file(GLOB FUZZ_HARNESSES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${FUZZ_HARNESSES})
  get_filename_component(name ${src} NAME_WE)
  string(REPLACE "fuzz_" "" short ${name})
  add_test(NAME fuzz.${short}
           COMMAND bash ${CMAKE_SOURCE_DIR}/scripts/fuzz.sh --ci ${short} ${FUZZ_SECONDS})
  set_tests_properties(fuzz.${short} PROPERTIES
    FIXTURES_REQUIRED fuzz_build
    ENVIRONMENT "FUZZ_BUILD_DIR=${FUZZ_BUILD_DIR}"
    SKIP_RETURN_CODE 77
    TIMEOUT 120
    LABELS fuzz)
endforeach()
