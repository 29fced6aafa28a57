"""Offline replay: the localization node's core over a bag, deterministic, no DDS.

Reads a rosbag2 folder (``rosbags``), keeps every TF of the bag in a :class:`TfTree` (first
pass, so lookups never depend on message order), synchronises image + camera_info (+ depth) with
the node's own :class:`ApproximateSync`, processes *every* synchronised frame in bag order (no
newest-frame dropping), and writes what the node would publish: ``<ns>/localization_pose``,
``<ns>/status`` and ``/tf``, each logged at the image stamp.

``publish_odom_tf: auto`` decides from the whole bag: odom->base from its TF when the bag has
any, else the node's identity odom->base from the first frame (a bag from ``make-bag``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from mast3r_ros.ros.bag.bag_io import read_bag, write_bag
from mast3r_ros.ros.compat.conversions import stamp_to_ns
from mast3r_ros.ros.compat.conversions_geometry import transform_to_T
from mast3r_ros.ros.compat.decode import decode_frame
from mast3r_ros.ros.compat.sync import ApproximateSync
from mast3r_ros.ros.compat.tf_tree import OdomSource, TfLookupError, TfTree
from mast3r_ros.ros.core.frames import FrameError, StampGuard
from mast3r_ros.ros.core.localization_core import LocalizationCore, Output, Status
from mast3r_ros.ros.core.params import LocalizationParams, ParamError, load_params_file
from mast3r_ros.ros.nodes.launch_description import default_params_file
from mast3r_ros.ros.nodes.outputs import pose_message, status_message, tf_msg


@dataclass(frozen=True)
class ReplayTopics:
    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    depth: str = "/camera/depth/image_raw"
    namespace: str = "mast3r"

    def out(self, name: str) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{name}" if ns else f"/{name}"


@dataclass
class ReplaySummary:
    n_frames: int = 0      # synchronised frames processed
    n_localized: int = 0   # frames with a published pose
    n_rejected: int = 0    # images that could not be synchronised or decoded


def load_replay_params(params_file: str, map_dir: str, checkpoint: str = "",
                       overrides: list[str] | None = None) -> LocalizationParams:
    """Node parameters from a params file (default config/localization.yaml), the map and
    ``NAME:=VALUE`` overrides (YAML values, as ``--ros-args -p``)."""
    values = load_params_file(params_file or default_params_file("localization"), "localization_node")
    values["map_path"] = str(map_dir)
    if checkpoint:
        values["mast3r.checkpoint"] = checkpoint
    for item in overrides or []:
        name, sep, text = item.partition(":=")
        if not sep:
            raise ParamError(f"parameter override {item!r} must look like NAME:=VALUE")
        values[name.strip()] = yaml.safe_load(text)
    values.pop("use_sim_time", None)
    return LocalizationParams.from_dict(values)


def _tf_tree(bag: Path) -> TfTree:
    tree = TfTree(cache_s=1e9)  # offline: keep the whole bag
    for topic, _, msg in read_bag(bag, ["/tf", "/tf_static"]):
        for t in msg.transforms:
            tree.set_transform(t.header.frame_id, t.child_frame_id, stamp_to_ns(t.header.stamp),
                               transform_to_T(t.transform), static=topic == "/tf_static")
    return tree


class _Replayer:
    def __init__(self, params: LocalizationParams, topics: ReplayTopics, tree: TfTree):
        self.p, self.topics, self.tree = params, topics, tree
        self.core = LocalizationCore(params)
        keys = ("image", "camera_info") + (("depth",) if params.subscribe_depth else ())
        names = {"image": topics.image, "camera_info": topics.camera_info, "depth": topics.depth}
        self.by_topic = {names[k]: k for k in keys}
        self.sync = ApproximateSync(keys, params.approx_sync_max_interval, params.sync_queue_size,
                                    {k: names[k] for k in keys})
        self.summary = ReplaySummary()
        self.out: list[tuple[str, int, object]] = []
        has_odom = self._lookup(params.odom_frame, params.base_frame, 0) is not None
        self.odom = OdomSource("true" if params.publish_odom_tf == "auto" and not has_odom
                               else params.publish_odom_tf)
        self.guard = StampGuard()

    def feed(self, topic: str, msg) -> None:
        key, stamp = self.by_topic[topic], stamp_to_ns(msg.header.stamp)
        if key == "image":
            verdict, why = self.guard.check(stamp)
            if verdict == "refuse":
                return self._emit(Output(Status(stamp, "", self.core.state(), error=True,
                                                message=f"unsynchronised input: {why}")))
            if verdict == "reset":
                self.sync.reset()
                self.core.reset()
        res = self.sync.add(key, stamp, msg)
        for stamp, reason in res.rejected:
            self._emit(Output(Status(stamp, "", self.core.state(), error=True,
                                     message=f"unsynchronised input: {reason}")))
        for stamp, group in zip(res.stamps, res.sets):
            self._frame(stamp, group)

    def _lookup(self, target: str, source: str, stamp: int):
        try:
            return self.tree.lookup(target, source, stamp)
        except TfLookupError:
            return None

    def _frame(self, stamp: int, msgs: dict) -> None:
        try:
            frame = decode_frame(stamp, msgs)
        except (ValueError, FrameError) as exc:
            self._emit(Output(Status(stamp, msgs["image"].header.frame_id, self.core.state(), error=True,
                                     message=f"bad input: {exc}")))
            return
        T_base_cam = self._lookup(self.p.base_frame, frame.frame_id, stamp)
        T_odom_base, _ = self.odom.T_odom_base(
            lambda: (self._lookup(self.p.odom_frame, self.p.base_frame, stamp), "not in the bag's TF"), 0.0)
        self.summary.n_frames += 1
        self._emit(self.core.process(frame, T_base_cam, T_odom_base))

    def _emit(self, out: Output) -> None:
        st = out.status
        if st.error and st.message.startswith(("unsynchronised", "bad input")):
            self.summary.n_rejected += 1
        pose = pose_message(out, self.p.map_frame)
        if pose is not None:
            self.summary.n_localized += 1
            self.out.append((self.topics.out("localization_pose"), st.stamp_ns, pose))
            tf = tf_msg(self.p, out.T_map_odom, st.stamp_ns, self.odom.identity)
            if tf.transforms:
                self.out.append(("/tf", st.stamp_ns, tf))
        latency = st.timings.get("total", 0.0)  # offline: processing time only
        self.out.append((self.topics.out("status"), st.stamp_ns, status_message(out, self.p.map_frame,
                                                                                 latency, 0)))


def replay_bag(bag: str | Path, out_bag: str | Path, params: LocalizationParams,
               topics: ReplayTopics = ReplayTopics(), storage: str = "mcap") -> ReplaySummary:
    """Localize every synchronised frame of ``bag`` and write the outputs to ``out_bag`` (new folder)."""
    bag, out_bag = Path(bag), Path(out_bag)
    if not bag.exists():
        raise ValueError(f"bag {str(bag)!r} does not exist")
    if out_bag.exists():
        raise ValueError(f"output bag {str(out_bag)!r} exists; rosbag2 bags are written to a new folder")
    r = _Replayer(params, topics, _tf_tree(bag))
    try:
        for topic, _, msg in read_bag(bag, list(r.by_topic)):
            r.feed(topic, msg)
    finally:
        r.core.close()
    write_bag(out_bag, sorted(r.out, key=lambda item: item[1]), storage)
    return r.summary
