# test_compress checks that its br copies decode: the decoder is a test-only dependency
# (the gateway itself only encodes).
pkg_check_modules(BROTLIDEC REQUIRED IMPORTED_TARGET libbrotlidec)
target_link_libraries(test_compress PRIVATE PkgConfig::BROTLIDEC)
