# Links the Debian-packaged libraries (gRPC, protobuf, Abseil, nghttp2, RE2, c-ares, yaml-cpp)
# from their static archives.
#
# Why: a binary then maps only the objects it uses. With the shared libraries an idle meshproxy
# holds ~18 MiB resident, mostly code and relocations of libgrpc and libprotobuf it never runs;
# with the archives, ~13 MiB. Every binary gets the same treatment, so the tests run what ships.
#
# OpenSSL, zlib, libstdc++ and glibc stay shared: Debian's cpp-httplib (meshpilot, meshctl, the
# demo app) is a shared library built against them, and a process must not hold two copies of
# one of them. meshproxy, which does not use cpp-httplib, adds mesh_static_runtime() for
# libstdc++.
#
# mesh_use_static_archives() rewrites, for every imported target visible in the calling
# directory, each location or link item that names a shared library with a static twin in the
# same folder (`libX.so[.N]` -> `libX.a`, `-lX` -> `/path/libX.a`).

set(_mesh_shared_only c m dl rt pthread ssl crypto z)

function(_mesh_static_twin item out)
  set(result "${item}")
  if(item MATCHES "^(.*)/lib([^/]+)\\.so(\\.[0-9.]+)?$")
    if(NOT CMAKE_MATCH_2 IN_LIST _mesh_shared_only AND EXISTS "${CMAKE_MATCH_1}/lib${CMAKE_MATCH_2}.a")
      set(result "${CMAKE_MATCH_1}/lib${CMAKE_MATCH_2}.a")
    endif()
  elseif(item MATCHES "^-l(.+)$" AND NOT CMAKE_MATCH_1 IN_LIST _mesh_shared_only)
    find_file(_mesh_archive_${CMAKE_MATCH_1} "lib${CMAKE_MATCH_1}.a"
              PATHS ${CMAKE_C_IMPLICIT_LINK_DIRECTORIES} ${CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES}
              NO_DEFAULT_PATH)
    if(_mesh_archive_${CMAKE_MATCH_1})
      set(result "${_mesh_archive_${CMAKE_MATCH_1}}")
    endif()
  endif()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

function(mesh_use_static_archives)
  get_directory_property(targets IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(type ${target} TYPE)
    if(type STREQUAL "EXECUTABLE")
      continue()
    endif()
    foreach(property IMPORTED_LOCATION IMPORTED_LOCATION_NONE IMPORTED_LOCATION_NOCONFIG
                     IMPORTED_LOCATION_RELEASE IMPORTED_LOCATION_RELWITHDEBINFO
                     IMPORTED_LOCATION_DEBUG)
      get_target_property(location ${target} ${property})
      if(location)
        _mesh_static_twin("${location}" twin)
        if(NOT twin STREQUAL location)
          set_target_properties(${target} PROPERTIES ${property} "${twin}")
          # A static archive has no soname; CMake must not ask the linker for one.
          set_target_properties(${target} PROPERTIES IMPORTED_NO_SONAME TRUE)
        endif()
      endif()
    endforeach()
    get_target_property(items ${target} INTERFACE_LINK_LIBRARIES)
    if(items)
      set(rewritten "")
      foreach(item IN LISTS items)
        _mesh_static_twin("${item}" twin)
        list(APPEND rewritten "${twin}")
      endforeach()
      set_target_properties(${target} PROPERTIES INTERFACE_LINK_LIBRARIES "${rewritten}")
    endif()
  endforeach()
endfunction()

# For a binary that links no shared C++ library: libstdc++ from its archive too.
function(mesh_static_runtime target)
  if(MESH_STATIC_DEPS)
    target_link_options(${target} PRIVATE -static-libstdc++ -static-libgcc)
  endif()
endfunction()
