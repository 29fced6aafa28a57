#!/usr/bin/env bash
# Generate the ROS 2 interfaces of mast3r_ros (msg/, srv/) into .venv from the repository's
# CMakeLists.txt, and tf2_msgs/TFMessage when no wheel provides tf2_msgs. Called by
# scripts/setup_venv.sh after the ROS 2 wheels are installed.
#
# Where the results go, and why:
#   mast3r_ros/msg/, mast3r_ros/srv/                  generated Python modules      (git-ignored)
#   mast3r_ros/mast3r_ros_s__rosidl_typesupport_*.so  their C extension modules     (git-ignored)
#   .venv/lib/libmast3r_ros__rosidl_*.so              C/C++ type support libraries
#   .venv/{include,share}/mast3r_ros, ament index     headers, CMake config, .msg/.srv/.idl files
# The editable install maps the package `mast3r_ros` to the source folder, so `mast3r_ros.msg`
# must sit in that folder to be importable next to our own modules (a second `mast3r_ros` folder
# in site-packages would shadow the editable one). The libraries are found at run time because
# the ROS wheels re-exec Python with .venv/lib on LD_LIBRARY_PATH.
#
# Everything is installed into a staging folder (DESTDIR) first and then copied with
# --remove-destination, so processes that have the old .so files mapped keep running.
# Skipped when the inputs hash to the recorded stamp and the types import and serialise.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=$ROOT/.venv
VPY=$VENV/bin/python
BUILD=$ROOT/build/ros_venv
STAMP=$VENV/.mast3r_ros_interfaces.stamp
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')

# Only build tf2_msgs ourselves when no wheel ships it.
build_tf2=1
if "$VPY" -c 'import importlib.metadata as m; m.version("ros-jazzy-tf2-msgs")' >/dev/null 2>&1; then
    build_tf2=0
fi

inputs_hash() {
    cat msg/*.msg srv/*.srv CMakeLists.txt package.xml cmake/*.cmake \
        scripts/ros_venv/build_interfaces.sh scripts/ros_venv/tf2_msgs/CMakeLists.txt \
        scripts/ros_venv/tf2_msgs/package.xml scripts/ros_venv/tf2_msgs/msg/*.msg | sha256sum | cut -d' ' -f1
}

types_work() {
    "$VPY" - <<'EOF' >/dev/null 2>&1
from rclpy.serialization import deserialize_message, serialize_message
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.srv import LoadMap, Localize, SaveMap, SetReference
from tf2_msgs.msg import TFMessage
for cls in (LocalizationStatus, TFMessage, LoadMap.Request, Localize.Response, SaveMap.Request,
            SetReference.Request):
    deserialize_message(serialize_message(cls()), cls)  # loads the C type support
EOF
}

# cmake_package SRC_DIR NAME: configure, build and stage-install one interface package.
cmake_package() {
    local src=$1 name=$2
    AMENT_PREFIX_PATH=$VENV cmake -S "$src" -B "$BUILD/$name" -Wno-dev \
        -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
        -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF -DMAST3R_ROS_INSTALL_PYTHON=OFF \
        >"$BUILD/$name.configure.log" 2>&1 || { tail -40 "$BUILD/$name.configure.log"; return 1; }
    cmake --build "$BUILD/$name" -j"${MAST3R_ROS_BUILD_JOBS:-2}" \
        >"$BUILD/$name.build.log" 2>&1 || { tail -40 "$BUILD/$name.build.log"; return 1; }
    DESTDIR="$BUILD/stage" cmake --install "$BUILD/$name" \
        >"$BUILD/$name.install.log" 2>&1 || { tail -40 "$BUILD/$name.install.log"; return 1; }
}

# Move the staged mast3r_ros Python next to the editable sources; the rest goes into .venv.
deploy() {
    local staged_site=$BUILD/stage$SITE
    local gen=$staged_site/mast3r_ros
    for sub in msg srv; do
        rm -rf "mast3r_ros/$sub"
        mkdir "mast3r_ros/$sub"
        cp "$gen/$sub/"*.py "mast3r_ros/$sub/"
    done
    cp --remove-destination "$gen/"*.so mast3r_ros/
    rm -rf "$gen" "$staged_site"/mast3r_ros-*.egg-info
    cp -a --remove-destination "$BUILD/stage$VENV/." "$VENV/"
}

want=$(inputs_hash)-tf2:$build_tf2
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && types_work; then
    echo "build_interfaces: up to date"
    exit 0
fi

for tool in cmake c++ flock; do
    command -v "$tool" >/dev/null || { echo "build_interfaces: '$tool' not found; generating the ROS" \
        "interfaces needs cmake, a C/C++ compiler and flock (Debian: apt-get install cmake g++ util-linux)" >&2; exit 1; }
done
mkdir -p "$BUILD"
# One build at a time per checkout (several shells may run the set-up together).
exec 9>"$BUILD/.lock"
flock 9
rm -rf "$BUILD/stage"
start=$(date +%s)
cmake_package "$ROOT" mast3r_ros
if [ "$build_tf2" = 1 ]; then
    cmake_package "$ROOT/scripts/ros_venv/tf2_msgs" tf2_msgs
fi
deploy
if ! types_work; then
    echo "build_interfaces: generated types do not import; see $BUILD/*.log" >&2
    exit 1
fi
echo "$want" >"$STAMP"
echo "build_interfaces: generated mast3r_ros interfaces$([ "$build_tf2" = 1 ] && echo ' + tf2_msgs/TFMessage') in $(( $(date +%s) - start )) s"
