# Fuzzing of the wire decoder (common/dw_wire.c).
#
# Always built: fuzz_wire_replay runs every file of the committed corpus
# through the fuzz target once (ctest fuzz_wire_corpus), under
# AddressSanitizer and UndefinedBehaviorSanitizer when the compiler supports
# them, and fuzz_wire_gen_corpus regenerates the seed corpus.
# With -DDW_BUILD_FUZZERS=ON and CC=clang: the libFuzzer binary fuzz_wire.
# dw_wire.c is compiled into these programs instead of linking dwcommon, so
# the decoder itself carries the sanitizer and coverage instrumentation.
include(CheckCCompilerFlag)

set(DW_FUZZ_DIR "${CMAKE_CURRENT_SOURCE_DIR}/fuzz")
set(DW_FUZZ_CORPUS "${DW_FUZZ_DIR}/corpus/wire")
set(DW_FUZZ_SANITIZERS "-fsanitize=address,undefined")

set(CMAKE_REQUIRED_LINK_OPTIONS "${DW_FUZZ_SANITIZERS}")
check_c_compiler_flag("${DW_FUZZ_SANITIZERS}" DW_HAVE_ASAN_UBSAN)
unset(CMAKE_REQUIRED_LINK_OPTIONS)

add_executable(fuzz_wire_replay "${DW_FUZZ_DIR}/fuzz_wire.c" "${DW_FUZZ_DIR}/replay_main.c"
    "${CMAKE_SOURCE_DIR}/common/dw_wire.c")
target_include_directories(fuzz_wire_replay PRIVATE "${CMAKE_SOURCE_DIR}/common")
target_link_libraries(fuzz_wire_replay PRIVATE dwproto PkgConfig::CZMQ)
if(DW_HAVE_ASAN_UBSAN)
    target_compile_options(fuzz_wire_replay PRIVATE ${DW_FUZZ_SANITIZERS}
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    target_link_options(fuzz_wire_replay PRIVATE ${DW_FUZZ_SANITIZERS})
else()
    message(STATUS "fuzz_wire_replay: ${DW_FUZZ_SANITIZERS} not supported, replaying without")
endif()
add_test(NAME fuzz_wire_corpus COMMAND fuzz_wire_replay "${DW_FUZZ_CORPUS}")
set_tests_properties(fuzz_wire_corpus PROPERTIES TIMEOUT 60
    ENVIRONMENT "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1;ASAN_OPTIONS=detect_leaks=1")

add_executable(fuzz_wire_gen_corpus "${DW_FUZZ_DIR}/gen_corpus.c")
target_link_libraries(fuzz_wire_gen_corpus PRIVATE dwcommon)

if(DW_BUILD_FUZZERS)
    if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
        message(FATAL_ERROR "DW_BUILD_FUZZERS needs clang: configure with CC=clang")
    endif()
    set(DW_LIBFUZZER_FLAGS "-fsanitize=fuzzer,address,undefined")
    add_executable(fuzz_wire "${DW_FUZZ_DIR}/fuzz_wire.c" "${CMAKE_SOURCE_DIR}/common/dw_wire.c")
    target_include_directories(fuzz_wire PRIVATE "${CMAKE_SOURCE_DIR}/common")
    target_link_libraries(fuzz_wire PRIVATE dwproto PkgConfig::CZMQ)
    target_compile_options(fuzz_wire PRIVATE ${DW_LIBFUZZER_FLAGS}
        -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
    target_link_options(fuzz_wire PRIVATE ${DW_LIBFUZZER_FLAGS})
endif()
