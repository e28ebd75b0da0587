# Redis Cluster and Sentinel servers for the issue 10 tests: a ctest fixture
# (scripts/redis-cluster-servers.sh) that starts a 3+3 plain cluster, a 3+3 TLS
# cluster and a master + replica + 3 sentinels on ports 17101-17133 before the
# tests that require it, and stops them afterwards.  This file sorts after
# integration.cmake, so the integration tests exist when it runs.
set(REDIS_CLUSTER_DIR ${CMAKE_BINARY_DIR}/redis-cluster)
# Two build directories testing at once need different ports (+1 .. +33).
set(REDIS_CLUSTER_PORT_BASE 17100 CACHE STRING "First port of the cluster test servers")

add_test(NAME redis_cluster.start
         COMMAND ${CMAKE_COMMAND} -E env REDIS_CLUSTER_PORT_BASE=${REDIS_CLUSTER_PORT_BASE}
                 sh ${CMAKE_SOURCE_DIR}/scripts/redis-cluster-servers.sh start ${REDIS_CLUSTER_DIR})
set_tests_properties(redis_cluster.start PROPERTIES FIXTURES_SETUP redis_cluster TIMEOUT 120
                     LABELS redis)
add_test(NAME redis_cluster.stop
         COMMAND ${CMAKE_COMMAND} -E env REDIS_CLUSTER_PORT_BASE=${REDIS_CLUSTER_PORT_BASE}
                 sh ${CMAKE_SOURCE_DIR}/scripts/redis-cluster-servers.sh stop ${REDIS_CLUSTER_DIR})
set_tests_properties(redis_cluster.stop PROPERTIES FIXTURES_CLEANUP redis_cluster TIMEOUT 60
                     LABELS redis)

# The servers are shared, and these tests kill masters, move slots and fail
# over: one file at a time (RESOURCE_LOCK), never beside another of them.
foreach(t test_cluster test_sentinel)
  if(TEST integration.${t})
    set_tests_properties(integration.${t} PROPERTIES
      FIXTURES_REQUIRED redis_cluster
      RESOURCE_LOCK redis_cluster
      LABELS "integration;redis")
    set_property(TEST integration.${t} APPEND PROPERTY ENVIRONMENT
                 "REDIS_CLUSTER_DIR=${REDIS_CLUSTER_DIR}"
                 "REDIS_CLUSTER_PORT_BASE=${REDIS_CLUSTER_PORT_BASE}")
  endif()
endforeach()

if(TEST unit.test_redis_cluster)
  set_tests_properties(unit.test_redis_cluster PROPERTIES
    FIXTURES_REQUIRED redis_cluster
    RESOURCE_LOCK redis_cluster
    LABELS "unit;redis"
    ENVIRONMENT "REDIS_CLUSTER_PORT_BASE=${REDIS_CLUSTER_PORT_BASE}")
endif()

# The busted cache module against the plain cluster (tests/lua/cache_cluster_spec.lua).
if(TEST lua.busted)
  set_tests_properties(lua.busted PROPERTIES
    FIXTURES_REQUIRED redis_cluster
    RESOURCE_LOCK redis_cluster)
  math(EXPR CACHEGW_CLUSTER_SEED_PORT "${REDIS_CLUSTER_PORT_BASE} + 1")
  set_property(TEST lua.busted APPEND PROPERTY ENVIRONMENT
               "CACHEGW_CLUSTER_SEED=redis://127.0.0.1:${CACHEGW_CLUSTER_SEED_PORT}")
endif()
