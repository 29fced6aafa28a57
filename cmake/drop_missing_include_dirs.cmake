# The ROS 2 wheels on PyPI export CMake targets whose include directories name folders of the
# machine that built them (/opt/python/...). CMake rejects an imported target that lists a missing
# include directory at generate time, so keep only the folders that exist. On a normal ROS install
# every folder exists and this changes nothing.
#
# Call it at the end of a CMakeLists.txt, after rosidl_generate_interfaces() and ament_package(),
# so it sees every target they imported into this directory.
function(drop_missing_include_dirs)
  get_property(_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(NOT _dirs)
      continue()
    endif()
    set(_kept "")
    foreach(_dir IN LISTS _dirs)
      # Generator expressions are resolved later and cannot be checked here: keep them.
      if(_dir MATCHES "^\\$<" OR EXISTS "${_dir}")
        list(APPEND _kept "${_dir}")
      endif()
    endforeach()
    set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_kept}")
  endforeach()
endfunction()
