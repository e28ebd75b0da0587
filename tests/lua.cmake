# Lua specs: busted (on Lua 5.4) over lua/ and policies/, plus the cachegw_helpers module
# they load so the policy library runs outside the gateway with the gateway's own C
# helpers (gw.hash, gw.now, gw.log, gw.where, gw.normalize_query).

# The module is loaded by the stock lua5.4 interpreter, which carries no sanitizer
# runtime, so it is built without the tree's sanitizer flags whatever CACHEGW_SANITIZE
# says.  It does not link liblua: the interpreter provides those symbols.
add_library(cachegw_helpers MODULE
  ${CMAKE_SOURCE_DIR}/src/policy/lua_helpers.c
  ${CMAKE_SOURCE_DIR}/src/policy/query_norm.c
  ${CMAKE_SOURCE_DIR}/src/core/log.c)
set_property(TARGET cachegw_helpers PROPERTY COMPILE_OPTIONS
  -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE)
set_property(TARGET cachegw_helpers PROPERTY LINK_OPTIONS "")
if(CACHEGW_WERROR)
  target_compile_options(cachegw_helpers PRIVATE -Werror)
endif()
target_include_directories(cachegw_helpers PRIVATE ${CACHEGW_INCLUDE_DIRS} ${LUA_INCLUDE_DIRS})
target_link_libraries(cachegw_helpers PRIVATE PkgConfig::OPENSSL)
set_target_properties(cachegw_helpers PROPERTIES
  PREFIX ""
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lua)

# The cache module (src/policy/lua_cache.c with src/policy/lua_cache_module.c, its module backend) as a
# loadable module: `require "cache"`.  Outside the
# gateway it keeps its own memory tier and, when REDIS_URL is a plain redis:// URL, uses
# hiredis's synchronous client.
add_library(cachegw_cache MODULE
  ${CMAKE_SOURCE_DIR}/src/policy/lua_cache.c
  ${CMAKE_SOURCE_DIR}/src/policy/lua_cache_module.c
  ${CMAKE_SOURCE_DIR}/src/cache/store_l1.c
  ${CMAKE_SOURCE_DIR}/src/cache/cache_object.c
  ${CMAKE_SOURCE_DIR}/src/cache/inval_index.c
  ${CMAKE_SOURCE_DIR}/src/redis/redis_url.c
  ${CMAKE_SOURCE_DIR}/src/core/hash.c
  ${CMAKE_SOURCE_DIR}/src/core/log.c)
set_property(TARGET cachegw_cache PROPERTY COMPILE_OPTIONS
  -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -DCACHEGW_LUA_CACHE_MODULE)
set_property(TARGET cachegw_cache PROPERTY LINK_OPTIONS "")
if(CACHEGW_WERROR)
  target_compile_options(cachegw_cache PRIVATE -Werror)
endif()
target_include_directories(cachegw_cache PRIVATE ${CACHEGW_INCLUDE_DIRS} ${LUA_INCLUDE_DIRS})
target_link_libraries(cachegw_cache PRIVATE PkgConfig::OPENSSL PkgConfig::HIREDIS Threads::Threads)
set_target_properties(cachegw_cache PROPERTIES
  PREFIX ""
  OUTPUT_NAME cache
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lua)

find_program(BUSTED busted)
if(BUSTED)
  add_test(NAME lua.busted
           COMMAND ${BUSTED} --lua=lua5.4 --output=plainTerminal
                   --helper=${CMAKE_SOURCE_DIR}/tests/lua/helper.lua
                   ${CMAKE_SOURCE_DIR}/tests/lua
           WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(lua.busted PROPERTIES
    TIMEOUT 120
    LABELS lua
    ENVIRONMENT "LUA_PATH=${CMAKE_SOURCE_DIR}/lua/?.lua\;${CMAKE_SOURCE_DIR}/?.lua\;\;;LUA_CPATH=${CMAKE_BINARY_DIR}/lua/?.so\;\;")
else()
  message(STATUS "busted not found: the Lua specs (tests/lua) are not registered with ctest")
endif()
