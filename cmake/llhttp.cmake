# llhttp comes from Debian's node-llhttp package, which installs its generated C sources under
# /usr/share/llhttp and its header under /usr/share/include/llhttp. We compile them as their own
# static target with warnings silenced: -Werror is for trident's code, not for generated code.
set(LLHTTP_SOURCE_DIR "/usr/share/llhttp" CACHE PATH "Directory holding llhttp's C sources")
set(LLHTTP_INCLUDE_DIR "/usr/share/include/llhttp" CACHE PATH "Directory holding llhttp.h")

foreach(f api.c http.c llhttp.c)
    if(NOT EXISTS "${LLHTTP_SOURCE_DIR}/${f}")
        message(FATAL_ERROR "llhttp source ${LLHTTP_SOURCE_DIR}/${f} not found: "
                            "install Debian's package 'node-llhttp' (apt-get install node-llhttp)")
    endif()
endforeach()
if(NOT EXISTS "${LLHTTP_INCLUDE_DIR}/llhttp.h")
    message(FATAL_ERROR "llhttp.h not found in ${LLHTTP_INCLUDE_DIR}: "
                        "install Debian's package 'node-llhttp' (apt-get install node-llhttp)")
endif()

add_library(llhttp STATIC
    "${LLHTTP_SOURCE_DIR}/api.c"
    "${LLHTTP_SOURCE_DIR}/http.c"
    "${LLHTTP_SOURCE_DIR}/llhttp.c")
target_include_directories(llhttp SYSTEM PUBLIC "${LLHTTP_INCLUDE_DIR}")
# Strict mode: the generated parser refuses what loose mode tolerates (see llhttp.c's
# LLHTTP_STRICT_MODE branch). Public so every includer sees the same definition.
target_compile_definitions(llhttp PUBLIC LLHTTP_STRICT_MODE=1)
target_compile_options(llhttp PRIVATE -w)
set_target_properties(llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
