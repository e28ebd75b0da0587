# Redis servers for the tests of the Redis tier: a ctest fixture that starts
# them (scripts/redis-test-servers.sh: plain 16379, TLS 16380, auth+ACL 16381,
# certificates generated on the spot) before any test that requires it, and
# stops them afterwards.  Tests that kill or pause Redis start private servers
# on ports 16390+ themselves.
set(REDIS_TEST_DIR ${CMAKE_BINARY_DIR}/redis-test)

add_test(NAME redis.start
         COMMAND sh ${CMAKE_SOURCE_DIR}/scripts/redis-test-servers.sh start ${REDIS_TEST_DIR})
set_tests_properties(redis.start PROPERTIES FIXTURES_SETUP redis TIMEOUT 60 LABELS redis)
add_test(NAME redis.stop
         COMMAND sh ${CMAKE_SOURCE_DIR}/scripts/redis-test-servers.sh stop ${REDIS_TEST_DIR})
set_tests_properties(redis.stop PROPERTIES FIXTURES_CLEANUP redis TIMEOUT 30 LABELS redis)

# The unit tests are registered (as unit.<file stem>) by tests/CMakeLists.txt
# before this fragment is included.
foreach(t test_tls test_redis_conn test_redis_pool test_store_redis)
  if(TEST unit.${t})
    set_tests_properties(unit.${t} PROPERTIES
      FIXTURES_REQUIRED redis
      ENVIRONMENT "REDIS_TEST_DIR=${REDIS_TEST_DIR}"
      LABELS "unit;redis")
  endif()
endforeach()
