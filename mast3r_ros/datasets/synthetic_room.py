"""Synthetic RGB-D sequence of a textured room, written in the 7-Scenes layout.

Why: the README's demo and CI must run on a fresh clone, and 7-Scenes cannot be committed
(non-commercial licence). This module renders, deterministically from a seed, a 6 m x 5 m x
2.6 m room (procedurally textured walls, floor, ceiling) with furniture boxes and a table, seen by
a hand-held-like camera: a mapping pass (a loop around the room centre, looking outward) and a
query pass (a different but overlapping loop, ~20 cm further out, lower, with other yaw/roll and
small jitter). Depth and poses are exact (depth quantised to mm when written).

Output folder (7-Scenes layout, opened by :func:`mast3r_ros.datasets.readers.open_dataset`)::

    camera-intrinsics.txt              3x3 K: fx = fy = 525, cx = 319.5, cy = 239.5 (pixel-centre
                                       convention: integer (u, v) is the pixel centre)
    frame-NNNNNN.color.png             640x480 RGB
    frame-NNNNNN.depth.png             uint16 millimetres (z-depth along the optical axis)
    frame-NNNNNN.pose.txt              4x4 T_world_cam (camera-to-world, OpenCV optical frame, m)
    synthetic.json                     seed, splits, recommended frame specs

With the default config, mapping frames are indices 0..59 (spec ``0:60``) and query frames
100..139 (spec ``100:140``). World frame: z up, floor at z = 0, room centre at x = y = 0.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from mast3r_ros.datasets.raycast import Box, face_normal, face_size_m, face_texel_points, raycast, sample_face
from mast3r_ros.datasets.textures import make_texture

DEMO_NAME = "synthetic_room_v1"
RENDER_VERSION = 1  # bump whenever the rendered pixels/depth/poses of a config change
_ROOM = ((-3.0, -2.5, 0.0), (3.0, 2.5, 2.6))
# furniture: (lo, hi) in metres, world frame (z up); all kept > 1.3 m from the room centre
_OBJECTS = (
    ((0.8, -2.35, 0.72), (2.0, -1.5, 0.77)),      # table top
    ((0.85, -2.3, 0.0), (0.9, -2.25, 0.72)),      # table legs
    ((1.9, -2.3, 0.0), (1.95, -2.25, 0.72)),
    ((0.85, -1.6, 0.0), (0.9, -1.55, 0.72)),
    ((1.9, -1.6, 0.0), (1.95, -1.55, 0.72)),
    ((1.1, -2.2, 0.77), (1.5, -1.8, 1.07)),       # box on the table
    ((-2.8, -2.3, 0.0), (-2.2, -1.7, 0.6)),       # crate in a corner
    ((-2.95, 1.1, 0.0), (-2.45, 2.3, 1.8)),       # cabinet
    ((2.3, 0.5, 0.0), (2.9, 1.3, 0.9)),           # sideboard
    ((-0.5, 2.0, 0.0), (0.1, 2.45, 0.45)),        # low box by the wall
    ((2.45, -1.2, 0.0), (2.9, -0.6, 0.4)),        # small box
    ((-1.6, -2.45, 1.2), (-0.6, -2.4, 1.9)),      # picture frame on a wall
)
_WALL_COLOURS = ((200, 185, 150), (150, 180, 210), (170, 200, 160), (215, 160, 140),
                 (150, 110, 80), (225, 225, 220))  # per room face: x-, x+, y-, y+, floor, ceiling
NEAR_M = 0.01  # no surface is ever closer than this to the camera (paths stay > 0.3 m from boxes)
# edges of a box whose corners are indexed ix * 4 + iy * 2 + iz
_BOX_EDGES = [(i, i | bit) for i in range(8) for bit in (1, 2, 4) if not i & bit]
_LIGHTS = np.array([[-1.0, 0.0, 2.5], [1.5, 0.5, 2.5]], np.float32)


@dataclass(frozen=True)
class SyntheticRoomConfig:
    """Everything that changes the rendered sequence (the output is a pure function of it)."""

    seed: int = 0
    width: int = 640
    height: int = 480
    fx: float = 525.0
    fy: float = 525.0
    cx: float = 319.5
    cy: float = 239.5
    n_map: int = 60
    n_query: int = 40
    query_start: int = 100            # index of the first query frame
    path_radius_m: float = 0.8        # radius of the mapping loop around the room centre
    query_offset_m: float = 0.2       # query loop radius offset
    texture_res_m: float = 0.004      # metres per texel
    rgb_noise_sigma: float = 2.0      # grey levels of Gaussian sensor noise
    depth_noise_m: float = 0.0        # Gaussian depth noise (std, metres) before mm quantisation

    def K(self) -> np.ndarray:
        """[3,3] float64 intrinsics, pixels, pixel-centre convention."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class SyntheticSequenceInfo:
    """What was rendered: folder, recommended frame specs and counts."""

    root: Path
    map_spec: str
    query_spec: str
    n_map: int
    n_query: int
    seed: int
    render_seconds: float = 0.0

    @property
    def n_frames(self) -> int:
        return self.n_map + self.n_query


def build_scene(cfg: SyntheticRoomConfig) -> list[Box]:
    """Room + furniture boxes with their procedural textures (deterministic from ``cfg.seed``)."""
    rng = np.random.default_rng(cfg.seed)
    boxes = [Box(np.array(_ROOM[0], np.float32), np.array(_ROOM[1], np.float32), inside=True)]
    boxes += [Box(np.array(lo, np.float32), np.array(hi, np.float32)) for lo, hi in _OBJECTS]
    for box in boxes:
        colour = rng.integers(40, 230, 3)
        for face in range(6):
            base = _WALL_COLOURS[face] if box.inside else tuple(int(c) for c in colour)
            density = 0.6 if (box.inside and face == 5) else 1.0
            tex = make_texture(rng, face_size_m(box, face), cfg.texture_res_m, base, density)
            box.textures.append(_bake_lighting(tex, box, face))
    return boxes


def shading(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Ambient + two ceiling point lights (Lambert, soft distance fall-off).

    Args:
        points: [3,...] float32 world points, metres; normals: [3,...] unit normals toward the viewer.
    Returns:
        [...] float32 brightness factor (about 0.55..1.0).
    """
    out = np.full(points.shape[1:], 0.55, np.float32)
    for light in _LIGHTS:
        to_l = light.reshape((3,) + (1,) * (points.ndim - 1)) - points
        dist = np.sqrt((to_l ** 2).sum(0)) + 1e-6
        lambert = np.maximum((normals * to_l).sum(0) / dist, 0.0)
        out += 0.45 * lambert / (1.0 + (dist / 3.0) ** 2)
    return out


def _bake_lighting(tex: np.ndarray, box: Box, face: int, step: int = 8) -> np.ndarray:
    """Multiply a face texture by the (view-independent, static) Lambert shading of its texels.
    Shading is smooth, so it is evaluated every ``step`` texels and upsampled; baking it once
    into the texture keeps per-frame rendering to ray casting + texture lookup."""
    h, w = tex.shape[:2]
    hs, ws = max(h // step, 2), max(w // step, 2)
    pts = face_texel_points(box, face, hs, ws)
    n = face_normal(face, [box]).reshape(3, 1, 1)
    shade = cv2.resize(shading(pts, n), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(tex * shade[..., None], 0, 255).astype(np.uint8)


def look_pose(position, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """T_world_cam [4,4] float64 for a camera at ``position`` (m, world z up) looking along
    (yaw about +z from +x, pitch up from horizontal), rolled about its optical axis.
    Camera = OpenCV optical frame: columns of R are (right, down, forward) in world coordinates."""
    fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, fwd], axis=1)
    T[:3, 3] = position
    return T


def trajectories(cfg: SyntheticRoomConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(mapping poses, query poses), each a list of T_world_cam [4,4] float64."""
    mapping = []
    for k in range(cfg.n_map):
        th = 2 * np.pi * k / cfg.n_map
        r = cfg.path_radius_m
        pos = (r * np.cos(th), r * np.sin(th), 1.45 + 0.05 * np.sin(3 * th))
        mapping.append(look_pose(pos, th + np.pi + 0.25 * np.sin(2 * th), -0.25 + 0.05 * np.sin(5 * th),
                                 0.02 * np.sin(4 * th)))
    query = []
    for k in range(cfg.n_query):
        ph = 2 * np.pi * (k + 0.5) / cfg.n_query
        r = cfg.path_radius_m + cfg.query_offset_m
        jitter = 0.02 * np.array([np.sin(5 * ph), np.cos(6 * ph), np.sin(4 * ph + 1)])
        pos = np.array([r * np.cos(ph), r * np.sin(ph), 1.35]) + jitter
        yaw = ph + np.pi + 0.25 * np.sin(2 * ph) + 0.06 + 0.02 * np.sin(7 * ph + 1)
        query.append(look_pose(pos, yaw, -0.2 + 0.03 * np.sin(3 * ph), 0.04 * np.sin(3 * ph + 0.5)))
    return mapping, query


class RoomRenderer:
    """Renders RGB + exact z-depth of the scene for any camera pose (textures built once)."""

    def __init__(self, cfg: SyntheticRoomConfig, boxes: list[Box] | None = None):
        self.cfg = cfg
        self.boxes = boxes if boxes is not None else build_scene(cfg)
        u, v = np.meshgrid(np.arange(cfg.width, dtype=np.float32), np.arange(cfg.height, dtype=np.float32))
        # camera-frame ray of each pixel centre with z = 1, so the hit's ray parameter is z-depth
        self.rays_cam = np.stack([(u - cfg.cx) / cfg.fx, (v - cfg.cy) / cfg.fy, np.ones_like(u)])  # [3,H,W]

    def render(self, T_world_cam: np.ndarray, rng: np.random.Generator | None = None,
               exposure: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Returns rgb [H,W,3] uint8 and depth [H,W] float32 metres (z along the optical axis,
        0 where nothing is hit). ``rng`` adds sensor noise when given."""
        cfg = self.cfg
        R = T_world_cam[:3, :3].astype(np.float32)
        origin = T_world_cam[:3, 3].astype(np.float32)
        rx, ry = self.rays_cam[0], self.rays_cam[1]
        dirs = R[:, 0, None, None] * rx + R[:, 1, None, None] * ry + R[:, 2, None, None]  # [3,H,W] world
        t, face = raycast(origin, dirs, self.boxes, regions=self._regions(T_world_cam))
        t, face, dirs = t.ravel(), face.ravel(), dirs.reshape(3, -1)
        hit = face >= 0
        points = origin[:, None] + dirs * np.where(hit, t, 0.0)[None]   # [3,N] world points
        colour = np.zeros((dirs.shape[1], 3), np.float32)
        for f in np.flatnonzero(np.bincount(face + 1, minlength=1)[1:]):
            sel = np.flatnonzero(face == f)
            colour[sel] = sample_face(int(f), points[:, sel], self.boxes)
        colour *= np.float32(exposure)
        if rng is not None and cfg.rgb_noise_sigma > 0:
            colour += rng.standard_normal(colour.shape, dtype=np.float32) * np.float32(cfg.rgb_noise_sigma)
        rgb = np.clip(colour, 0, 255).astype(np.uint8).reshape(cfg.height, cfg.width, 3)
        depth = np.where(hit, t, 0.0).astype(np.float32).reshape(cfg.height, cfg.width)
        return rgb, depth

    def _regions(self, T_world_cam: np.ndarray) -> list[tuple[slice, slice] | None]:
        """Per box, (rows, cols) slices bounding its image projection (None = all pixels: the room).

        The part of a convex box in front of the plane z = NEAR_M projects inside the convex hull of
        its corners in front of that plane plus the points where its edges cross it, so the
        bounding rectangle of those points is conservative for every hit deeper than NEAR_M."""
        cfg = self.cfg
        T_cam_world = np.linalg.inv(T_world_cam)
        out: list[tuple[slice, slice] | None] = []
        for box in self.boxes:
            if box.inside:
                out.append(None)
                continue
            corners = np.array([[x, y, z] for x in (box.lo[0], box.hi[0]) for y in (box.lo[1], box.hi[1])
                                for z in (box.lo[2], box.hi[2])])
            pc = corners @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
            front = pc[:, 2] >= NEAR_M
            pts = [pc[front]]
            for i, j in _BOX_EDGES:
                if front[i] != front[j]:
                    s = (NEAR_M - pc[i, 2]) / (pc[j, 2] - pc[i, 2])
                    pts.append((pc[i] + s * (pc[j] - pc[i]))[None])
            pts = np.concatenate(pts)
            if len(pts) == 0:  # entirely behind the camera
                out.append((slice(0, 0), slice(0, 0)))
                continue
            u = cfg.fx * pts[:, 0] / pts[:, 2] + cfg.cx
            v = cfg.fy * pts[:, 1] / pts[:, 2] + cfg.cy
            out.append((_span(v, cfg.height), _span(u, cfg.width)))
        return out


def _span(x: np.ndarray, size: int) -> slice:
    """Pixel slice covering the float coordinates ``x`` (1 px margin), clipped to [0, size)."""
    lo = int(np.clip(np.floor(x.min()) - 1, 0, size))
    return slice(lo, max(lo, int(np.clip(np.ceil(x.max()) + 2, 0, size))))


def _write_frame(out: Path, index: int, rgb: np.ndarray, depth: np.ndarray, T: np.ndarray) -> None:
    stem = out / f"frame-{index:06d}"
    if not cv2.imwrite(f"{stem}.color.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {stem}.color.png")
    mm = np.clip(np.round(depth * 1000.0), 0, 65534).astype(np.uint16)
    if not cv2.imwrite(f"{stem}.depth.png", mm, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"cannot write {stem}.depth.png")
    np.savetxt(f"{stem}.pose.txt", T, fmt="%.10f")


def render_synthetic_sequence(out_dir: str | Path,
                              config: SyntheticRoomConfig = SyntheticRoomConfig()) -> SyntheticSequenceInfo:
    """Render the mapping + query passes into ``out_dir`` (7-Scenes layout, see module docstring)."""
    cfg = config
    if cfg.n_map < 1 or cfg.n_query < 0 or cfg.query_start < cfg.n_map:
        raise ValueError(f"need n_map >= 1, n_query >= 0 and query_start >= n_map, got {cfg.n_map}, "
                         f"{cfg.n_query}, {cfg.query_start}")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    renderer = RoomRenderer(cfg)
    mapping, query = trajectories(cfg)
    indexed = list(enumerate(mapping)) + [(cfg.query_start + k, T) for k, T in enumerate(query)]
    with ThreadPoolExecutor(max_workers=1) as writer:  # PNG encoding overlaps the next render
        pending = []
        for index, T in indexed:
            rng = np.random.default_rng([cfg.seed, index])
            rgb, depth = renderer.render(T, rng, exposure=1.0 + 0.06 * np.sin(0.37 * index))
            if cfg.depth_noise_m > 0:
                depth = np.where(depth > 0, depth + rng.normal(0, cfg.depth_noise_m, depth.shape), 0.0)
            pending.append(writer.submit(_write_frame, out, index, rgb, depth, T))
        for job in pending:
            job.result()  # re-raises a write error
    np.savetxt(out / "camera-intrinsics.txt", cfg.K(), fmt="%.6f")
    info = SyntheticSequenceInfo(root=out, map_spec=f"0:{cfg.n_map}",
                                 query_spec=f"{cfg.query_start}:{cfg.query_start + cfg.n_query}",
                                 n_map=cfg.n_map, n_query=cfg.n_query, seed=cfg.seed)
    info.render_seconds = time.perf_counter() - t0
    meta = {"name": DEMO_NAME, "render_version": RENDER_VERSION, "config": asdict(cfg), "map_spec": info.map_spec,
            "query_spec": info.query_spec, "n_map": cfg.n_map, "n_query": cfg.n_query,
            "layout": "7-Scenes: frame-NNNNNN.{color.png,depth.png (uint16 mm),pose.txt (T_world_cam)}",
            "world_frame": "z up, floor z=0, metres; camera = OpenCV optical frame"}
    (out / "synthetic.json").write_text(json.dumps(meta, indent=2))
    return info


def load_sequence_info(root: str | Path) -> SyntheticSequenceInfo:
    """Read ``synthetic.json`` of a rendered folder back into a :class:`SyntheticSequenceInfo`."""
    root = Path(root)
    try:
        meta = json.loads((root / "synthetic.json").read_text())
        return SyntheticSequenceInfo(root=root, map_spec=meta["map_spec"], query_spec=meta["query_spec"],
                                     n_map=meta["n_map"], n_query=meta["n_query"],
                                     seed=meta["config"]["seed"])
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{root / 'synthetic.json'} is missing or malformed: {exc}") from None


def demo_config() -> SyntheticRoomConfig:
    """The config of the default demo sequence."""
    return SyntheticRoomConfig()


def _is_current_demo(root: Path) -> bool:
    """True when ``root`` holds a complete render of the default config by this renderer version."""
    try:
        meta = json.loads((root / "synthetic.json").read_text())
    except (OSError, ValueError):
        return False
    default = json.loads(json.dumps(asdict(demo_config())))
    return meta.get("render_version") == RENDER_VERSION and meta.get("config") == default


def default_demo_dataset(cache: str | Path | None = None) -> Path:
    """Folder of the default synthetic sequence, rendered once into ``<cache>/synthetic_room_v1``
    (default cache: :func:`mast3r_ros.paths.cache_dir`) and reused while its ``synthetic.json``
    matches this renderer version and the default config (a stale render is replaced). Rendering
    goes to a temp folder that is renamed into place: a crash never leaves a half-written dataset."""
    from mast3r_ros.paths import cache_dir

    base = Path(cache) if cache is not None else cache_dir()
    final = base / DEMO_NAME
    if _is_current_demo(final):
        return final
    base.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp, old = base / f".{DEMO_NAME}.{token}.tmp", base / f".{DEMO_NAME}.{token}.old"
    try:
        render_synthetic_sequence(tmp, demo_config())
        if _is_current_demo(final):  # another process finished first
            return final
        try:
            if final.exists():
                os.replace(final, old)
            os.replace(tmp, final)
        except OSError:  # lost a race with another process rendering the same folder
            if not _is_current_demo(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return final
