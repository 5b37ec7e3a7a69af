"""Renders one procedurally generated dark action clip.

A 2.5-D articulated figure (head, torso, upper/lower arms and legs) acts out one
of the 11 ARID classes in front of a textured room, in linear light. The clip is
then lit by an illumination that changes over time (dimming, flicker, a passing
light, a switched light), exposed to a low mean luma, and passed through a
sensor model (shot noise, read noise, camera OETF, 8-bit quantisation).

The figure fills most of the frame height and its clothes differ from the
room by at least 2.5x in luminance, as a silhouette does; the room's texture
and furniture are kept calm enough that the action, not the room, is the
strongest signal.

Poses live in a body frame (forward f, up u, lateral l) and are projected with a
yaw angle psi: image x = f cos(psi) + l sin(psi), so a turn foreshortens the
shoulders and swaps which arm is in front without any 3-D renderer.
"""

from __future__ import annotations

import dataclasses

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave")

# Segment lengths as fractions of the actor's standing height.
_THIGH, _SHIN, _TORSO, _NECK, _HEAD_R = 0.245, 0.245, 0.29, 0.07, 0.07
_UPPER_ARM, _FOREARM, _SHOULDER_HALF, _HIP_HALF = 0.17, 0.16, 0.11, 0.065


@dataclasses.dataclass(frozen=True)
class Actor:
    """What stays the same for one actor id across all classes and takes."""

    height: float          # standing height, fraction of frame height
    limb_width: float      # segment thickness, fraction of standing height
    skin: np.ndarray
    shirt: np.ndarray
    trousers: np.ndarray
    speed: float           # personal tempo multiplier


def make_actor(rng: np.random.Generator) -> Actor:
    def colour(lo, hi):
        return rng.uniform(lo, hi, 3).astype(np.float32)
    return Actor(height=float(rng.uniform(0.8, 0.95)), limb_width=float(rng.uniform(0.09, 0.11)),
                 skin=colour(0.25, 0.75) * np.float32([1.0, 0.8, 0.65]), shirt=colour(0.05, 0.9),
                 trousers=colour(0.03, 0.6), speed=float(rng.uniform(0.85, 1.15)))


# ----------------------------------------------------------------------------- poses

def _smooth(a: float, b: float, u: np.ndarray) -> np.ndarray:
    x = np.clip((u - a) / max(b - a, 1e-6), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _bump(a: float, b: float, u: np.ndarray, ramp: float = 0.25) -> np.ndarray:
    """0 -> 1 over [a, a + ramp*(b-a)], hold, 1 -> 0 ending at b."""
    r = ramp * (b - a)
    return _smooth(a, a + r, u) - _smooth(b - r, b, u)


def _gait(u, rng, cycles, amp, knee, arm_amp, stride):
    """Alternating leg/arm swing; returns the pose terms and the forward travel."""
    phase = 2 * np.pi * (cycles * u + rng.uniform())
    swing = np.sin(phase)
    return dict(
        thigh_l=amp * swing, thigh_r=-amp * swing,
        knee_l=knee * np.clip(-np.cos(phase), 0, 1) + 0.05, knee_r=knee * np.clip(np.cos(phase), 0, 1) + 0.05,
        arm_l=-arm_amp * swing, arm_r=arm_amp * swing,
        bounce=0.5 * knee * 0.04 * np.abs(np.sin(phase)),
    ), stride * cycles * u


def action_poses(name: str, u: np.ndarray, rng: np.random.Generator) -> tuple[dict, dict]:
    """Per-frame joint angles (radians, arrays shaped like ``u``) and prop state.

    ``u`` is the action's progress in [0, 1] over the clip. Confusable pairs are
    built to share their static poses: ``Stand`` is ``Sit`` played backwards,
    ``Walk``/``Run`` draw lean, elbow bend and posture from the same ranges,
    ``Pick``/``Push`` use the same box at the same place.
    """
    zero = np.zeros_like(u)
    p = {k: zero.copy() for k in (
        "lean", "thigh_l", "thigh_r", "knee_l", "knee_r", "arm_l", "arm_r", "elbow_l", "elbow_r",
        "abduct_l", "abduct_r", "lift", "travel", "bounce")}
    p["arm_l"] += rng.uniform(-0.1, 0.15)
    p["arm_r"] += rng.uniform(-0.1, 0.15)
    p["elbow_l"] += rng.uniform(0.05, 0.3)
    p["elbow_r"] += rng.uniform(0.05, 0.3)
    props: dict = {}
    start = rng.uniform(0.05, 0.3)
    end = rng.uniform(0.7, 0.95)
    if name == "Drink":
        r = _bump(start, end, u)
        p["arm_r"] = 0.15 + r * rng.uniform(0.5, 0.8)
        p["elbow_r"] = 0.2 + r * rng.uniform(2.0, 2.4)
        props["cup"] = 0.3 * r  # cup tilts as it reaches the mouth
    elif name == "Pour":
        r = _bump(start, end, u, ramp=0.2)
        p["arm_r"] = 0.15 + r * rng.uniform(1.1, 1.4)
        p["elbow_r"] = 0.2 + r * 0.2
        props["bottle"] = _bump(start + 0.2 * (end - start), end - 0.15 * (end - start), u, 0.35) * rng.uniform(1.5, 2.1)
    elif name in ("Pick", "Push"):
        props["box"] = rng.uniform(0.28, 0.36)  # box edge, in actor heights
        if name == "Pick":
            grab = start + 0.45 * (end - start)
            bend = _bump(start, end, u, ramp=0.45)
            holding = (u >= grab).astype(np.float32)
            p["lean"] = bend * rng.uniform(0.9, 1.2)
            p["thigh_l"] = p["thigh_r"] = bend * 0.7
            p["knee_l"] = p["knee_r"] = bend * 1.3
            reach = bend * 0.25 + holding * (1 - bend) * 0.55
            p["arm_l"] = p["arm_r"] = reach
            p["elbow_l"] = p["elbow_r"] = 0.1 + holding * (1 - bend) * 0.9
            props["box_held"] = holding
        else:
            push = _smooth(start, start + 0.15, u)
            gait, travel = _gait(u, rng, cycles=rng.uniform(1.0, 1.5), amp=0.35, knee=0.5, arm_amp=0.0, stride=0.5)
            for k in ("thigh_l", "thigh_r", "knee_l", "knee_r"):
                p[k] = gait[k] * push
            p["lean"] = push * rng.uniform(0.3, 0.5)
            p["arm_l"] = p["arm_r"] = 0.2 + push * 0.55
            p["elbow_l"] = p["elbow_r"] = 0.15 * np.ones_like(u)
            p["travel"] = np.concatenate([[0], np.cumsum(np.diff(travel) * push[1:])])
            props["box_held"] = np.ones_like(u) * -1  # pushed: follows the hands along the floor
    elif name in ("Walk", "Run"):
        run = name == "Run"
        cycles = rng.uniform(2.2, 3.2) if run else rng.uniform(1.1, 1.7)
        gait, travel = _gait(u, rng, cycles=cycles, amp=rng.uniform(0.35, 0.6) if run else rng.uniform(0.3, 0.5),
                             knee=rng.uniform(0.7, 1.1) if run else rng.uniform(0.4, 0.7), arm_amp=rng.uniform(0.3, 0.6),
                             stride=0.75 if run else 0.5)
        p.update(gait)
        p["lean"] += rng.uniform(0.0, 0.25)
        p["elbow_l"] += rng.uniform(0.2, 1.2)
        p["elbow_r"] = p["elbow_l"]
        p["travel"] = travel
        if run:
            p["lift"] = 0.06 * np.abs(np.sin(2 * np.pi * cycles * u))
    elif name in ("Sit", "Stand"):
        s = _smooth(start, end, u if name == "Sit" else 1 - u)
        p["thigh_l"] = p["thigh_r"] = s * 1.5
        p["knee_l"] = p["knee_r"] = s * 1.5
        p["lean"] = 0.1 * s + 0.5 * np.sin(np.pi * s)  # lean forward mid-transition
        p["arm_l"] += 0.3 * np.sin(np.pi * s)
        p["arm_r"] += 0.3 * np.sin(np.pi * s)
        props["chair"] = True
    elif name == "Jump":
        jumps = int(rng.integers(1, 3))
        for j in range(jumps):
            a = start + (end - start) * j / jumps
            b = start + (end - start) * (j + 1) / jumps
            mid = (a + b) / 2
            crouch = _bump(a, mid, u, 0.5) + _bump(mid + 0.1 * (b - a), b, u, 0.5)
            flight = np.clip(1 - ((u - mid) / (0.12 * (b - a) + 0.04)) ** 2, 0, 1)
            p["thigh_l"] += crouch * 0.8
            p["thigh_r"] += crouch * 0.8
            p["knee_l"] += crouch * 1.4
            p["knee_r"] += crouch * 1.4
            p["lean"] += crouch * 0.35
            p["lift"] += flight * rng.uniform(0.3, 0.45)
            p["arm_l"] += flight * 1.6 - crouch * 0.4
            p["arm_r"] += flight * 1.6 - crouch * 0.4
    elif name == "Turn":
        props["turn"] = _smooth(start, end, u)
        step, _ = _gait(u, rng, cycles=rng.uniform(0.8, 1.5), amp=0.12, knee=0.3, arm_amp=0.1, stride=0.0)
        for k in ("thigh_l", "thigh_r", "knee_l", "knee_r"):
            p[k] = step[k] * _bump(start, end, u, 0.3)
    elif name == "Wave":
        raised = _bump(start * 0.5, 1 - (1 - end) * 0.5, u, 0.15)
        hz = rng.uniform(2.5, 4.5)
        p["abduct_r"] = raised * 1.3
        p["arm_r"] = 0.1 + raised * rng.uniform(2.0, 2.5)
        p["elbow_r"] = 0.2 + raised * (0.7 + 0.75 * np.sin(2 * np.pi * hz * u))
    else:
        raise ValueError(f"unknown synthetic action class {name!r}; expected one of {CLASS_NAMES}")
    return p, props


def _direction(angle, abduct, side):
    """Unit vector (f, u, l) of a limb at ``angle`` from straight down."""
    s = np.sin(angle)
    return np.stack([s * np.cos(abduct), -np.cos(angle), side * s * np.sin(abduct)], -1)


def skeleton(p: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Body-frame (T, 3) joint positions for every segment, feet on the ground."""
    n = p["lean"].shape[0]
    zero = np.zeros(n)
    side = {"l": 1.0, "r": -1.0}
    up = np.stack([np.sin(p["lean"]), np.cos(p["lean"]), zero], -1)
    hip_c = np.zeros((n, 3))
    segments, feet = {}, []
    for s, sign in side.items():
        hip = hip_c + [0, 0, sign * _HIP_HALF]
        knee = hip + _THIGH * _direction(p[f"thigh_{s}"], zero, sign)
        foot = knee + _SHIN * _direction(p[f"thigh_{s}"] - p[f"knee_{s}"], zero, sign)
        segments[f"thigh_{s}"], segments[f"shin_{s}"] = (hip, knee), (knee, foot)
        feet.append(foot)
    shoulder_c = hip_c + _TORSO * up
    for s, sign in side.items():
        shoulder = shoulder_c + [0, 0, sign * _SHOULDER_HALF]
        elbow = shoulder + _UPPER_ARM * _direction(p[f"arm_{s}"], p[f"abduct_{s}"], sign)
        hand = elbow + _FOREARM * _direction(p[f"arm_{s}"] + p[f"elbow_{s}"], p[f"abduct_{s}"], sign)
        segments[f"upper_arm_{s}"], segments[f"forearm_{s}"] = (shoulder, elbow), (elbow, hand)
    segments["torso"] = (hip_c + 0.02 * up, shoulder_c)
    segments["head"] = (shoulder_c + (_NECK + _HEAD_R) * up,) * 2
    # Anchor: the lower foot on the floor, the feet's mean where the actor stands.
    feet = np.stack(feet)
    offset = np.stack([-feet[..., 0].mean(0) + p["travel"], -feet[..., 1].min(0) + p["lift"] + p["bounce"], zero], -1)
    return {k: (a + offset, b + offset) for k, (a, b) in segments.items()}


# ----------------------------------------------------------------------------- drawing

def _blend(canvas, ys, xs, alpha, colour):
    region = canvas[ys, xs]
    region += alpha[..., None] * (np.asarray(colour, np.float32) - region)


def _capsule(canvas, p0, p1, radius, colour):
    """Anti-aliased thick segment p0-p1 (pixel x, y), drawn from its distance field."""
    h, w, _ = canvas.shape
    x0, x1 = sorted((p0[0], p1[0]))
    y0, y1 = sorted((p0[1], p1[1]))
    xa, xb = max(int(x0 - radius - 1), 0), min(int(x1 + radius + 2), w)
    ya, yb = max(int(y0 - radius - 1), 0), min(int(y1 + radius + 2), h)
    if xa >= xb or ya >= yb:
        return
    dx, dy = float(p1[0] - p0[0]), float(p1[1] - p0[1])
    xx = np.arange(xa, xb, dtype=np.float32)[None, :] - np.float32(p0[0])
    yy = np.arange(ya, yb, dtype=np.float32)[:, None] - np.float32(p0[1])
    t = np.clip((xx * dx + yy * dy) * np.float32(1 / max(dx * dx + dy * dy, 1e-6)), 0, 1)
    dist = np.hypot(xx - t * dx, yy - t * dy)
    _blend(canvas, slice(ya, yb), slice(xa, xb), np.clip(radius - dist + 0.5, 0, 1), colour)


def _rect(canvas, x0, y0, x1, y1, colour):
    """Anti-aliased axis-aligned filled rectangle (fractional pixel edges)."""
    h, w, _ = canvas.shape
    xa, xb = max(int(x0) - 1, 0), min(int(x1) + 2, w)
    ya, yb = max(int(y0) - 1, 0), min(int(y1) + 2, h)
    if xa >= xb or ya >= yb:
        return
    xx = np.arange(xa, xb, dtype=np.float32)
    yy = np.arange(ya, yb, dtype=np.float32)
    ax = np.clip(np.minimum(xx - x0 + 0.5, x1 - xx + 0.5), 0, 1)
    ay = np.clip(np.minimum(yy - y0 + 0.5, y1 - yy + 0.5), 0, 1)
    _blend(canvas, slice(ya, yb), slice(xa, xb), ay[:, None] * ax[None, :], colour)


def _smooth_noise(rng, h, w, cell):
    """Value noise: a coarse random grid bilinearly upsampled to (h, w)."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.normal(size=(gh, gw)).astype(np.float32)
    y = np.arange(h, dtype=np.float32) / cell
    x = np.arange(w, dtype=np.float32) / cell
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    g = lambda dy, dx: grid[(y0 + dy)[:, None], (x0 + dx)[None, :]]
    return (g(0, 0) * (1 - fy) * (1 - fx) + g(0, 1) * (1 - fy) * fx + g(1, 0) * fy * (1 - fx) + g(1, 1) * fy * fx)


def background(rng: np.random.Generator, h: int, w: int, horizon: float) -> np.ndarray:
    """A textured room: wall and floor gradients, value-noise texture, furniture."""
    wall = rng.uniform(0.1, 0.8, (2, 3)).astype(np.float32)
    floor = rng.uniform(0.05, 0.5, (2, 3)).astype(np.float32)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = np.where(np.arange(h)[:, None, None] < horizon,
                   wall[0] + (wall[1] - wall[0]) * y, floor[0] + (floor[1] - floor[0]) * y)
    img = np.broadcast_to(img, (h, w, 3)).copy()
    texture = 1 + 0.15 * _smooth_noise(rng, h, w, max(h // 6, 2)) + 0.05 * _smooth_noise(rng, h, w, 2)
    img *= texture[..., None]
    for _ in range(int(rng.integers(0, 3))):
        colour = rng.uniform(0.05, 0.9, 3)
        fw, fh = rng.uniform(0.1, 0.3) * w, rng.uniform(0.2, 0.6) * h
        x0 = rng.uniform(-0.1, 0.95) * w
        kind = rng.integers(3)
        if kind == 0:    # shelf / cupboard standing on the floor
            _rect(img, x0, horizon - fh, x0 + fw, horizon + 0.02 * h, colour)
            for k in range(1, 4):
                _rect(img, x0, horizon - fh * k / 4, x0 + fw, horizon - fh * k / 4 + 0.015 * h, colour * 0.5)
        elif kind == 1:  # window or picture on the wall
            top = rng.uniform(0.05, 0.3) * h
            _rect(img, x0, top, x0 + fw, top + fh * 0.6, np.minimum(colour * 1.6, 1))
            _rect(img, x0 + fw / 2 - 0.01 * w, top, x0 + fw / 2 + 0.01 * w, top + fh * 0.6, colour * 0.4)
        else:            # table
            top = horizon - 0.35 * fh
            _rect(img, x0, top, x0 + fw * 1.5, top + 0.03 * h, colour)
            for lx in (x0 + 0.02 * w, x0 + fw * 1.5 - 0.04 * w):
                _rect(img, lx, top, lx + 0.02 * w, horizon + 0.03 * h, colour * 0.7)
    return np.clip(img, 0, 1)


# ----------------------------------------------------------------------------- the figure

_LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec.709, linear light
_MIN_CONTRAST = 2.5


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _LUMINANCE


def _silhouette_gain(colours: list[np.ndarray], room_luminance: float) -> float:
    """Scale of ``colours`` so the figure they paint differs from the room by >= 2.5x in luminance.

    Without it a figure dressed like the wall vanishes once the clip is exposed
    at a few percent of full scale and drowned in sensor noise: the clip would
    carry a label and no action. The colours keep their hue; the scale moves
    them to whichever side (darker or lighter) needs the smaller change.
    """
    own = float(np.mean([_luminance(c) for c in colours]))
    brightest = float(max(_luminance(c) for c in colours))
    if own <= room_luminance / _MIN_CONTRAST or own >= room_luminance * _MIN_CONTRAST:
        return 1.0
    darker = room_luminance / _MIN_CONTRAST / own
    lighter = room_luminance * _MIN_CONTRAST / own
    if lighter * brightest > 1.0 or (1 / darker) < lighter:
        return darker
    return lighter


def _project(points, psi, scale, cx, ground):
    f, u, l = points[..., 0], points[..., 1], points[..., 2]
    x = cx + scale * (f * np.cos(psi) + l * np.sin(psi))
    depth = -f * np.sin(psi) + l * np.cos(psi)
    return np.stack([x, ground - scale * u], -1), depth


def render_reflectance(name: str, actor: Actor, rng: np.random.Generator, h: int, w: int,
                       num_frames: int) -> np.ndarray:
    """Linear-light (T, H, W, 3) float32 reflectance video of ``actor`` doing ``name``."""
    margin = max(1, round(h / 64))
    ground = rng.uniform(0.84, 0.95) * h + margin
    room = background(rng, h + 2 * margin, w + 2 * margin, horizon=ground - rng.uniform(0.05, 0.25) * h)
    speed = actor.speed * rng.uniform(0.85, 1.15)
    u = np.clip((np.arange(num_frames) / max(num_frames - 1, 1) - 0.5) * speed + 0.5 + rng.uniform(-0.08, 0.08), 0, 1)
    pose, props = action_poses(name, u, rng)
    psi0 = rng.uniform(0.05, 0.4) * np.pi
    if rng.uniform() < 0.5:
        psi0 = np.pi - psi0
    psi = np.full(num_frames, psi0) + (np.pi - 2 * psi0) * props.get("turn", 0.0)
    # One-armed actions use the arm nearer the camera (the left when facing right).
    active = "l" if psi0 < np.pi / 2 else "r"
    if active == "l":
        pose = {k[:-1] + {"l": "r", "r": "l"}[k[-1]] if k[-2:] in ("_l", "_r") else k: v for k, v in pose.items()}
    segments = skeleton(pose)
    scale = actor.height * h * rng.uniform(0.95, 1.05)
    xs = np.concatenate([a[:, 0] for a, _ in segments.values()]) * np.cos(psi0)
    span = (xs.max() - xs.min()) * scale
    cx = rng.uniform(0.15 * w, max(0.85 * w - span, 0.15 * w + 1)) - xs.min() * scale + margin
    jitter = np.cumsum(rng.normal(0, 0.4, (num_frames, 2)), 0)
    jitter = np.clip(np.round(jitter - jitter.mean(0)), -margin, margin).astype(int)

    radius = 0.5 * actor.limb_width * scale
    room_luminance = float(_luminance(room).mean())
    gain = _silhouette_gain([actor.shirt, actor.trousers, actor.skin], room_luminance)
    colour = {"torso": actor.shirt * gain, "upper_arm": actor.shirt * gain, "forearm": actor.skin * gain,
              "head": actor.skin * gain, "thigh": actor.trousers * gain, "shin": actor.trousers * gain}
    box = props.get("box")
    prop_colour = rng.uniform(0.2, 0.9, 3).astype(np.float32)
    prop_colour *= _silhouette_gain([prop_colour], room_luminance)
    frames = np.empty((num_frames, h, w, 3), np.float32)
    seg_xy, seg_depth = _project(np.stack([np.stack(ends) for ends in segments.values()]), psi,
                                 scale, cx - margin, ground - margin)  # (segment, end, frame, ...)
    for t in range(num_frames):
        canvas = room[margin + jitter[t, 1]:, margin + jitter[t, 0]:][:h, :w].copy()
        proj = lambda pts: _project(np.asarray(pts, np.float64), psi[t], scale, cx - margin - jitter[t, 0],
                                    ground - margin - jitter[t, 1])
        items = []  # (depth, draw) painted far to near
        for key, (pa, pb), (da, db) in zip(segments, seg_xy[:, :, t] - jitter[t], seg_depth[:, :, t]):
            kind = key.rsplit("_", 1)[0] if key[-2] == "_" else key
            r = _HEAD_R * scale if key == "head" else radius * {"torso": 1.9, "thigh": 1.25}.get(kind, 1.0)
            shade = 0.7 if (da + db) / 2 < -0.02 else 1.0
            items.append(((da + db) / 2, lambda pa=pa, pb=pb, r=r, c=colour[kind] * shade: _capsule(canvas, pa, pb, r, c)))
        hand = segments[f"forearm_{active}"][1][t]
        if "cup" in props:
            tip = hand + 0.07 * np.array([np.sin(props["cup"][t]), np.cos(props["cup"][t]), 0])
            (pa, pb), (d, _) = proj(np.stack([hand, tip]))
            items.append((d + 0.01, lambda pa=pa, pb=pb: _capsule(canvas, pa, pb, 0.03 * scale, prop_colour)))
        if "bottle" in props:
            tilt = props["bottle"][t]
            tip = hand + 0.14 * np.array([np.sin(tilt), np.cos(tilt), 0])
            (pa, pb), (d, _) = proj(np.stack([hand - (tip - hand) * 0.3, tip]))
            items.append((d + 0.01, lambda pa=pa, pb=pb: _capsule(canvas, pa, pb, 0.025 * scale, prop_colour)))
        if box is not None:
            hands = (segments["forearm_r"][1][t] + segments["forearm_l"][1][t]) / 2
            held = props["box_held"][t]
            if held > 0:      # lifted: hanging from the hands
                centre = hands + [0.3 * box, -0.3 * box, 0]
            elif held < 0:    # pushed along the floor ahead of the hands
                centre = np.array([hands[0] + 0.5 * box, box / 2, 0])
            else:             # waiting on the floor where the hands will reach it
                start_hands = (segments["forearm_r"][1][0] + segments["forearm_l"][1][0]) / 2
                centre = np.array([start_hands[0] + 0.3 * box + 0.12, box / 2, 0])
            (c,), (d,) = proj(centre[None])
            half = 0.5 * box * scale * (abs(np.cos(psi[t])) + 0.6 * abs(np.sin(psi[t])))
            items.append((d + 0.03, lambda c=c, half=half: (
                _rect(canvas, c[0] - half, c[1] - box * scale / 2, c[0] + half, c[1] + box * scale / 2, prop_colour),
                _rect(canvas, c[0] - half, c[1] - box * scale / 2, c[0] + half, c[1] - box * scale / 2 + radius,
                      prop_colour * 0.6))))
        if "chair" in props:
            seated = int(np.argmax(pose["thigh_l"]))
            seat = segments["thigh_l"][0][seated] * [1, 0, 0] + [0, 0.235, 0]
            legs = [seat + [-0.08, 0, 0], seat + [0.14, 0, 0]]
            pts = np.stack([legs[0], legs[1], legs[0] * [1, 0, 1], legs[1] * [1, 0, 1], legs[0] + [-0.02, 0.3, 0]])
            pp, dd = proj(pts)
            chair_colour = prop_colour * 0.8
            items.append((dd.mean() - 0.2, lambda pp=pp: [
                _capsule(canvas, pp[i], pp[j], 0.6 * radius, chair_colour) for i, j in ((0, 1), (0, 2), (1, 3), (0, 4))]))
        for _, draw in sorted(items, key=lambda item: item[0]):
            draw()
        frames[t] = canvas
    return frames
