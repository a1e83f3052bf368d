# The C API library (include/rnnfast/rnnfast.h, csrc/capi/): librnnfast plus its install rules, a
# CMake package (find_package(rnnfast CONFIG) -> rnnfast::rnnfast) and a pkg-config file.
# Included from the top-level CMakeLists.txt when RNNFAST_CAPI is ON (the default without Python).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

option(RNNFAST_CAPI_SHARED "Build librnnfast as a shared library (OFF: static)" ON)
if(RNNFAST_CAPI_SHARED)
  set(RNNFAST_CAPI_TYPE SHARED)
else()
  set(RNNFAST_CAPI_TYPE STATIC)
endif()

add_library(rnnfast ${RNNFAST_CAPI_TYPE}
  csrc/capi/capi.cpp
  csrc/capi/dense.cpp
  csrc/capi/json.cpp
  csrc/capi/model.cpp
  csrc/capi/model_file.cpp
  csrc/capi/model_stream.cpp)
add_library(rnnfast::rnnfast ALIAS rnnfast)
target_include_directories(rnnfast PUBLIC
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_include_directories(rnnfast PRIVATE csrc)
# Only the C functions are exported (RNNFAST_API); the C++ core stays hidden inside.
target_compile_options(rnnfast PRIVATE -O3 -fvisibility=hidden -fvisibility-inlines-hidden -Wall -Wextra)
target_link_libraries(rnnfast PRIVATE rnnfast_core)
if(RNNFAST_CAPI_SHARED AND CMAKE_SYSTEM_NAME STREQUAL "Linux")
  target_link_options(rnnfast PRIVATE -Wl,--version-script=${CMAKE_CURRENT_SOURCE_DIR}/cmake/rnnfast.map)
  set_property(TARGET rnnfast APPEND PROPERTY LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/cmake/rnnfast.map)
endif()
set_target_properties(rnnfast PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
  PUBLIC_HEADER include/rnnfast/rnnfast.h)

set(RNNFAST_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/rnnfast)
set(RNNFAST_EXPORTED rnnfast)
if(NOT RNNFAST_CAPI_SHARED)
  list(APPEND RNNFAST_EXPORTED rnnfast_core)  # a static librnnfast needs the core archive beside it
endif()
install(TARGETS ${RNNFAST_EXPORTED} EXPORT rnnfastTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/rnnfast)
install(EXPORT rnnfastTargets NAMESPACE rnnfast:: DESTINATION ${RNNFAST_CMAKE_DIR})

# A static librnnfast needs the C++ runtime when a C program links it (pkg-config users).
set(RNNFAST_PC_PRIVATE "-lstdc++ -lm")
configure_package_config_file(cmake/rnnfastConfig.cmake.in ${CMAKE_CURRENT_BINARY_DIR}/rnnfastConfig.cmake
  INSTALL_DESTINATION ${RNNFAST_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/rnnfastConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rnnfastConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/rnnfastConfigVersion.cmake
  DESTINATION ${RNNFAST_CMAKE_DIR})
# Relocatable: the prefix is found from the .pc file's own place (cmake --install --prefix works).
file(RELATIVE_PATH RNNFAST_PC_UP "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
configure_file(cmake/rnnfast.pc.in ${CMAKE_CURRENT_BINARY_DIR}/rnnfast.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/rnnfast.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
