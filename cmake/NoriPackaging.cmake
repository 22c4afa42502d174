# SPDX-License-Identifier: MIT
# How libnoricache and its adapters are built as libraries and installed:
# shared and static twins, relocatable pkg-config files, and a CMake package
# (find_package(noricache) -> noricache::noricache, noricache::mhd, ...).
include(CMakePackageConfigHelpers)

set(NORI_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/noricache)

# The .pc files name their prefix relative to their own folder
# (${pcfiledir}), so an installed tree can be moved or installed with
# `cmake --install --prefix P` into a prefix the build never knew.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(NORI_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH nori_pc_up "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
  string(REGEX REPLACE "/$" "" nori_pc_up "${nori_pc_up}")
  set(NORI_PC_PREFIX "\${pcfiledir}/${nori_pc_up}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(NORI_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(NORI_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(NORI_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  set(NORI_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()

# nori_library_properties(TARGET EXPORT_NAME): the shared or static library's
# file name, soname and exported name, and its public include folder.
function(nori_library_properties target export_name)
  get_target_property(type ${target} TYPE)
  string(REGEX REPLACE "_static$" "" file_name ${target})
  set_target_properties(${target} PROPERTIES OUTPUT_NAME ${file_name} EXPORT_NAME ${export_name})
  if(type STREQUAL "SHARED_LIBRARY")
    set_target_properties(${target} PROPERTIES
      VERSION ${PROJECT_VERSION}
      SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
      C_VISIBILITY_PRESET hidden)
  endif()
  target_include_directories(${target} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
endfunction()

# nori_install_pkgconfig(NAME DESCRIPTION d [REQUIRES r] [REQUIRES_PRIVATE r]
#                        [LIBS_PRIVATE l]): writes and installs NAME.pc.
function(nori_install_pkgconfig name)
  cmake_parse_arguments(PC "" "DESCRIPTION;REQUIRES;REQUIRES_PRIVATE;LIBS_PRIVATE" "" ${ARGN})
  set(PC_NAME ${name})
  configure_file(${PROJECT_SOURCE_DIR}/cmake/pkgconfig.pc.in ${PROJECT_BINARY_DIR}/${name}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${name}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

# nori_add_adapter(NAME SOURCES s... DEPENDS targets... PC_REQUIRES modules
#                  DESCRIPTION d): noricache_NAME (shared, on the shared core)
# and noricache_NAME_static (on the static core), exported as noricache::NAME
# and noricache::NAME_static in their own export set, plus noricache_NAME.pc.
function(nori_add_adapter name)
  cmake_parse_arguments(A "" "DESCRIPTION;PC_REQUIRES" "SOURCES;DEPENDS" ${ARGN})
  add_library(noricache_${name} SHARED ${A_SOURCES})
  add_library(noricache_${name}_static STATIC ${A_SOURCES})
  nori_library_properties(noricache_${name} ${name})
  nori_library_properties(noricache_${name}_static ${name}_static)
  target_link_libraries(noricache_${name} PUBLIC noricache ${A_DEPENDS})
  target_link_libraries(noricache_${name}_static PUBLIC noricache_static ${A_DEPENDS})
  string(TOUPPER ${name} upper)
  string(SUBSTRING ${upper} 0 1 first)
  string(SUBSTRING ${name} 1 -1 rest)
  install(TARGETS noricache_${name} noricache_${name}_static EXPORT noricache${first}${rest}Targets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT noricache${first}${rest}Targets NAMESPACE noricache::
          DESTINATION ${NORI_CMAKE_INSTALL_DIR})
  nori_install_pkgconfig(noricache_${name} DESCRIPTION "${A_DESCRIPTION}"
    REQUIRES "noricache ${A_PC_REQUIRES}")
endfunction()

# nori_install_package(): the core export set and noricacheConfig.cmake with
# its version file.
function(nori_install_package)
  install(EXPORT noricacheTargets NAMESPACE noricache:: DESTINATION ${NORI_CMAKE_INSTALL_DIR})
  configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/noricacheConfig.cmake.in
    ${PROJECT_BINARY_DIR}/noricacheConfig.cmake
    INSTALL_DESTINATION ${NORI_CMAKE_INSTALL_DIR})
  # 0.x: only the same minor version is compatible.
  write_basic_package_version_file(${PROJECT_BINARY_DIR}/noricacheConfigVersion.cmake
    COMPATIBILITY SameMinorVersion)
  install(FILES ${PROJECT_BINARY_DIR}/noricacheConfig.cmake
                ${PROJECT_BINARY_DIR}/noricacheConfigVersion.cmake
          DESTINATION ${NORI_CMAKE_INSTALL_DIR})
endfunction()
