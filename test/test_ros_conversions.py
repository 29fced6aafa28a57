"""Message <-> numpy conversions (mast3r_ros.ros.compat.conversions*), checked against independent oracles:
hand-built wire bytes, OpenCV's own codecs, the REP-103 camera rotation written as roll/pitch/yaw,
known quaternions, and a CDR round trip of every message we build."""
from __future__ import annotations

import math
import struct

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import Quaternion
from rclpy.serialization import deserialize_message, serialize_message
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField

from mast3r_ros.ros.compat import conversions as cv
from mast3r_ros.ros.compat import conversions_geometry as cg

RNG = np.random.default_rng(7)


def _wire(msg):
    """Serialise to CDR and back: what a subscriber in another process would get."""
    return deserialize_message(serialize_message(msg), type(msg))


def _random_T() -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=3).as_matrix()
    T[:3, 3] = RNG.normal(size=3)
    return T


# ---------------------------------------------------------------- images


def test_bgr8_bytes_decode_to_rgb():
    # 2x1 image: a pure blue then a pure red pixel, written as B, G, R bytes.
    msg = Image(height=1, width=2, encoding="bgr8", step=6, data=bytes([255, 0, 0, 0, 0, 255]))
    rgb = cv.image_to_rgb(msg)
    assert rgb.tolist() == [[[0, 0, 255], [255, 0, 0]]]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_colour_round_trip_over_the_wire(encoding):
    rgb = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    header = cv.make_header(1_500_000_001, "camera_optical_frame")
    back = cv.image_to_rgb(_wire(cv.rgb_to_image(rgb, encoding, header)))
    if encoding == "mono8":  # grey replicated to three channels, OpenCV's luma as oracle
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        assert np.array_equal(back, np.repeat(grey[:, :, None], 3, axis=2))
    else:
        assert np.array_equal(back, rgb)


def test_row_padding_is_dropped():
    rows = [bytes([1, 2, 3, 4, 5, 6]) + b"\xee\xee", bytes([7, 8, 9, 10, 11, 12]) + b"\xee\xee"]
    msg = Image(height=2, width=2, encoding="rgb8", step=8, data=b"".join(rows))
    assert cv.image_to_rgb(msg).reshape(-1).tolist() == list(range(1, 13))


def test_depth_16uc1_millimetres_little_and_big_endian():
    little = Image(height=1, width=3, encoding="16UC1", step=6, is_bigendian=0,
                   data=struct.pack("<3H", 1500, 0, 65000))
    big = Image(height=1, width=3, encoding="16UC1", step=6, is_bigendian=1,
                data=struct.pack(">3H", 1500, 0, 65000))
    for msg in (little, big):
        d = cv.image_to_depth_m(msg)
        assert d.dtype == np.float32 and d.shape == (1, 3)
        np.testing.assert_allclose(d[0], [1.5, 0.0, 65.0], rtol=1e-6)


def test_depth_32fc1_invalid_values_become_zero():
    values = [2.25, float("nan"), float("inf"), -float("inf"), -1.0, 0.5]
    msg = Image(height=2, width=3, encoding="32FC1", step=12, data=struct.pack("<6f", *values))
    np.testing.assert_array_equal(cv.image_to_depth_m(msg), [[2.25, 0, 0], [0, 0, 0.5]])


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_round_trip(encoding):
    depth = RNG.uniform(0.3, 8.0, size=(4, 6)).astype(np.float32)
    depth[0, 0] = 0.0  # no measurement
    back = cv.image_to_depth_m(_wire(cv.depth_m_to_image(depth, encoding)))
    atol = 0.5e-3 if encoding == "16UC1" else 0.0  # millimetre rounding
    np.testing.assert_allclose(back, depth, atol=atol + 1e-7)
    assert back[0, 0] == 0.0


def test_depth_32fc1_writes_nan_for_no_measurement():
    msg = cv.depth_m_to_image(np.array([[0.0, 1.0]]), "32FC1")
    raw = np.frombuffer(bytes(msg.data), dtype="<f4")
    assert math.isnan(raw[0]) and raw[1] == 1.0


def test_rosbags_messages_are_read_too():
    # Duck typing: a rosbags dataclass with numpy data converts like an rclpy message.
    typestore = pytest.importorskip("rosbags.typesys").get_typestore(
        pytest.importorskip("rosbags.typesys").Stores.ROS2_JAZZY)
    Img = typestore.types["sensor_msgs/msg/Image"]
    Hdr = typestore.types["std_msgs/msg/Header"]
    T = typestore.types["builtin_interfaces/msg/Time"]
    msg = Img(header=Hdr(stamp=T(sec=1, nanosec=2), frame_id="cam"), height=1, width=2, encoding="rgb8",
              is_bigendian=0, step=6, data=np.arange(6, dtype=np.uint8))
    assert cv.image_to_rgb(msg).reshape(-1).tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("fields, words", [
    ({"encoding": "yuv422"}, ["encoding", "yuv422"]),
    ({"step": 5}, ["step 5"]),
    ({"data": bytes(11)}, ["11 bytes", "12"]),
    ({"width": 0, "step": 0, "data": b""}, ["empty"]),
])
def test_bad_images_name_the_problem(fields, words):
    base = {"height": 2, "width": 2, "encoding": "rgb8", "step": 6, "data": bytes(12)}
    base.update(fields)
    with pytest.raises(cv.ConversionError) as err:
        cv.image_to_rgb(Image(**base))
    for word in words:
        assert word in str(err.value)


def test_depth_and_colour_encodings_are_not_mixed_up():
    with pytest.raises(cv.ConversionError, match="16UC1"):
        cv.image_to_depth_m(cv.rgb_to_image(np.zeros((2, 2, 3), np.uint8)))
    with pytest.raises(cv.ConversionError, match="colour"):
        cv.image_to_rgb(cv.depth_m_to_image(np.ones((2, 2))))
    with pytest.raises(cv.ConversionError, match="dtype"):
        cv.numpy_to_image(np.zeros((2, 2), np.float64), "32FC1")
    for shape in [(4,), (2, 2, 3)]:
        with pytest.raises(cv.ConversionError, match="does not fit"):
            cv.numpy_to_image(np.zeros(shape, np.uint16), "16UC1")
    with pytest.raises(cv.ConversionError, match="does not fit"):
        cv.numpy_to_image(np.zeros((2, 2, 4), np.uint8), "rgb8")


# ---------------------------------------------------------------- compressed images


def test_png_from_opencv_decodes_exactly():
    rgb = RNG.integers(0, 256, size=(6, 9, 3), dtype=np.uint8)
    _ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
    msg = CompressedImage(format="png", data=buf.tobytes())
    assert np.array_equal(cv.compressed_to_rgb(msg), rgb)


def test_compressed_round_trip_jpeg_and_png():
    # Smooth image so JPEG error is small and meaningful.
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([xx * 5, yy * 7, (xx + yy) * 3], axis=2).astype(np.uint8)
    png = _wire(cv.rgb_to_compressed(rgb, "png"))
    assert np.array_equal(cv.compressed_to_rgb(png), rgb)
    jpg = _wire(cv.rgb_to_compressed(rgb, "jpeg", jpeg_quality=95))
    assert "jpeg" in jpg.format
    assert np.abs(cv.compressed_to_rgb(jpg).astype(int) - rgb).mean() < 3.0
    # OpenCV as an independent decoder of what we wrote: BGR order on its side.
    decoded = cv2.imdecode(np.frombuffer(bytes(png.data), np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded[:, :, ::-1], rgb)


def test_bad_compressed_images():
    with pytest.raises(cv.ConversionError, match="not jpeg or png"):
        cv.compressed_to_rgb(CompressedImage(format="theora", data=b"abc"))
    with pytest.raises(cv.ConversionError, match="cannot be decoded"):
        cv.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg"))


# ---------------------------------------------------------------- camera info


def test_camera_info_round_trip_and_known_values():
    K = np.array([[585.0, 0, 320], [0, 585.0, 240], [0, 0, 1]])  # 7-Scenes
    intr = cv.CameraIntrinsics(K, None, 640, 480)
    msg = _wire(cv.intrinsics_to_camera_info(intr, cv.make_header(5, "cam")))
    assert list(msg.p) == [585.0, 0, 320, 0, 0, 585.0, 240, 0, 0, 0, 1, 0]
    back = cv.camera_info_to_intrinsics(msg)
    assert back.dist is None and back.size == (640, 480)
    np.testing.assert_array_equal(back.K, K)
    dist = np.array([0.1, -0.2, 0.001, 0.002, 0.05])
    back = cv.camera_info_to_intrinsics(_wire(cv.intrinsics_to_camera_info(cv.CameraIntrinsics(K, dist, 640, 480))))
    np.testing.assert_array_equal(back.dist, dist)


def test_bad_camera_info():
    good = cv.intrinsics_to_camera_info(cv.CameraIntrinsics(np.diag([500.0, 500.0, 1.0]), None, 64, 48))
    bad_k = _wire(good)
    bad_k.k[0] = 0.0
    with pytest.raises(cv.ConversionError, match="pinhole"):
        cv.camera_info_to_intrinsics(bad_k)
    fisheye = _wire(good)
    fisheye.distortion_model, fisheye.d = "equidistant", [0.1, 0.0, 0.0, 0.0]
    with pytest.raises(cv.ConversionError, match="equidistant"):
        cv.camera_info_to_intrinsics(fisheye)
    intr = cv.camera_info_to_intrinsics(good)
    with pytest.raises(cv.ConversionError, match="640x480 but camera_info is 64x48"):
        cv.check_image_matches_camera_info(640, 480, intr)


# ---------------------------------------------------------------- poses, optical frames


def test_known_quaternion_and_round_trip():
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # +90 deg about z
    T[:3, 3] = [1, 2, 3]
    pose = cg.T_to_pose(T)
    q = pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], [0, 0, math.sqrt(0.5), math.sqrt(0.5)], atol=1e-12)
    Tr = _random_T()
    np.testing.assert_allclose(cg.pose_to_T(_wire(cg.pose_stamped(Tr, cv.make_header(0, "map"))).pose), Tr,
                               atol=1e-12)
    np.testing.assert_allclose(cg.transform_to_T(cg.T_to_transform(Tr)), Tr, atol=1e-12)


def test_nearly_orthonormal_rotation_is_accepted_and_projected():
    T = _random_T()
    T[:3, :3] *= 1.0003  # as in 7-Scenes ground truth
    R = cg.pose_to_T(cg.T_to_pose(T))[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(R, T[:3, :3], atol=1e-3)
    T[:3, :3] *= 1.1
    with pytest.raises(cv.ConversionError, match="rotation matrix"):
        cg.T_to_pose(T)


def test_non_unit_quaternion_refused():
    pose = cg.T_to_pose(np.eye(4))
    pose.orientation = Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)
    with pytest.raises(cv.ConversionError, match="unit quaternion"):
        cg.pose_to_T(pose)


def test_optical_rotation_is_the_ros_camera_convention():
    # camera_link -> camera_optical_frame in every ROS driver: rpy (-pi/2, 0, -pi/2), fixed axes.
    R_rpy = Rotation.from_euler("xyz", [-math.pi / 2, 0, -math.pi / 2]).as_matrix()
    np.testing.assert_allclose(cg.R_BODY_OPTICAL, R_rpy, atol=1e-12)
    q = Rotation.from_matrix(cg.R_BODY_OPTICAL).as_quat()
    assert np.allclose(q, [-0.5, 0.5, -0.5, 0.5]) or np.allclose(q, [0.5, -0.5, 0.5, -0.5])
    # Directions: forward (optical +z) is body +x; image right (+x) is body -y; image down is body -z.
    np.testing.assert_allclose(cg.R_BODY_OPTICAL @ [0, 0, 1], [1, 0, 0])
    np.testing.assert_allclose(cg.R_BODY_OPTICAL @ [1, 0, 0], [0, -1, 0])
    np.testing.assert_allclose(cg.R_BODY_OPTICAL @ [0, 1, 0], [0, 0, -1])


def test_optical_body_pose_conversion_round_trip():
    T_map_optical = _random_T()
    T_map_body = cg.optical_to_body(T_map_optical)
    np.testing.assert_allclose(T_map_body[:3, 3], T_map_optical[:3, 3])  # co-located
    # The camera's viewing direction in the map: optical z axis == body x axis.
    np.testing.assert_allclose(T_map_body[:3, 0], T_map_optical[:3, 2], atol=1e-12)
    np.testing.assert_allclose(cg.body_to_optical(T_map_body), T_map_optical, atol=1e-12)


def test_pose_with_covariance_round_trip_and_checks():
    A = RNG.normal(size=(6, 6))
    cov = A @ A.T
    msg = _wire(cg.pose_with_covariance_stamped(_random_T(), cov, cv.make_header(42, "map")))
    _T, back = cg.pose_with_covariance_to_T(msg)
    np.testing.assert_allclose(back, cov)
    assert msg.header.frame_id == "map" and cv.stamp_to_ns(msg.header.stamp) == 42
    with pytest.raises(cv.ConversionError, match="symmetric"):
        cg.pose_with_covariance_stamped(np.eye(4), A, cv.make_header(0, "map"))


def test_pose_array_path_and_tf():
    Ts = [_random_T() for _ in range(3)]
    arr = cg.pose_array_to_T(_wire(cg.pose_array(Ts, cv.make_header(1, "map"))))
    np.testing.assert_allclose(arr, np.stack(Ts), atol=1e-12)
    stamps = [10, 2_000_000_000, 3_500_000_000]
    Ps, S = cg.path_to_T(_wire(cg.path(Ts, stamps, cv.make_header(9, "map"))))
    np.testing.assert_allclose(Ps, np.stack(Ts), atol=1e-12)
    assert S.tolist() == stamps
    tfm = _wire(cg.tf_message([cg.transform_stamped(Ts[0], "map", "odom", 77),
                               cg.transform_stamped(Ts[1], "odom", "base_link", 78)]))
    got = cg.tf_message_to_dict(tfm)
    assert set(got) == {("map", "odom"), ("odom", "base_link")}
    assert got[("map", "odom")][0] == 77
    np.testing.assert_allclose(got[("odom", "base_link")][1], Ts[1], atol=1e-12)
    with pytest.raises(cv.ConversionError, match="different"):
        cg.transform_stamped(np.eye(4), "map", "map", 0)


# ---------------------------------------------------------------- point clouds


def test_packed_rgb_matches_the_pcl_layout():
    msg = cg.xyz_rgb_to_pointcloud2(np.array([[1.0, 2.0, 3.0]]), np.array([[255, 0, 128]], np.uint8),
                                    cv.make_header(0, "map"))
    assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb"] and msg.point_step == 16
    x, y, z, rgb_bits = struct.unpack("<fffI", bytes(msg.data))
    assert (x, y, z) == (1.0, 2.0, 3.0) and rgb_bits == 0x00FF0080


def test_cloud_round_trip():
    xyz = RNG.normal(size=(50, 3)).astype(np.float32)
    rgb = RNG.integers(0, 256, size=(50, 3), dtype=np.uint8)
    msg = _wire(cg.xyz_rgb_to_pointcloud2(xyz, rgb, cv.make_header(0, "map")))
    back_xyz, back_rgb = cg.pointcloud2_to_xyz_rgb(msg)
    np.testing.assert_array_equal(back_xyz, xyz)
    np.testing.assert_array_equal(back_rgb, rgb)
    assert cg.pointcloud2_to_xyz_rgb(cg.xyz_rgb_to_pointcloud2(xyz, None, cv.make_header(0, "m")))[1] is None


def test_foreign_cloud_layout_big_endian_padded_uint32_rgb():
    # A driver-style cloud: float64 xyz, 4 pad bytes, uint32 rgb, big endian, 2x2 organised,
    # with 8 bytes of row padding. Built byte by byte with struct as the oracle.
    pts = [((0.5, -1.0, 2.0), (1, 2, 3)), ((4.0, 5.0, 6.0), (250, 128, 0)),
           ((-7.0, 8.5, 9.0), (9, 9, 9)), ((1e3, 0.0, -2.0), (0, 0, 255))]
    step = 8 * 3 + 4 + 4
    rows = []
    for r in range(2):
        row = b"".join(struct.pack(">3d4xI", *p, (c[0] << 16) | (c[1] << 8) | c[2]) for p, c in pts[2 * r:2 * r + 2])
        rows.append(row + bytes(8))
    fields = [PointField(name=n, offset=8 * i, datatype=PointField.FLOAT64, count=1) for i, n in enumerate("xyz")]
    fields.append(PointField(name="rgb", offset=28, datatype=PointField.UINT32, count=1))
    msg = PointCloud2(height=2, width=2, fields=fields, is_bigendian=True, point_step=step,
                      row_step=2 * step + 8, data=b"".join(rows))
    xyz, rgb = cg.pointcloud2_to_xyz_rgb(msg)
    np.testing.assert_allclose(xyz, [p for p, _ in pts])
    assert rgb.tolist() == [list(c) for _, c in pts]


def test_bad_cloud():
    msg = cg.xyz_rgb_to_pointcloud2(np.zeros((3, 3)), None, cv.make_header(0, "map"))
    msg.data = bytes(len(msg.data) - 4)
    with pytest.raises(cv.ConversionError, match="PointCloud2 data"):
        cg.pointcloud2_to_xyz_rgb(msg)
