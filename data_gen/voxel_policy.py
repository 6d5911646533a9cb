"""How the voxel world's agent walks: the action set and two policies.

`ReturnPolicy` (the default) is modelled on the collector of TECO's Minecraft dataset, which
walks forward in runs of at most 25 steps or holds a turn of about 100 degrees, and adds
trips back: after exploring for a while the agent walks to a pose it held early on and walks
its earlier path again, facing the way it faced then, so a video shows places again after
they have left the view (the benchmark's revisit and memory frames). `RandomWalkPolicy` is a
persistent random walk that rarely comes back.

A policy sees the agent's pose (x, y in blocks, yaw in radians, yaw = 0 along +x, turning
left increases it) and whether its last forward step was blocked, and returns an action.
"""

from __future__ import annotations

import math

import numpy as np

from teco_jax.revisit import wrap_angle

ACTIONS = ("noop", "forward", "turn_left", "turn_right", "jump", "forward_jump")
NOOP, FORWARD, TURN_LEFT, TURN_RIGHT, JUMP, FORWARD_JUMP = range(len(ACTIONS))
POLICIES = ("return", "random")


class RandomWalkPolicy:
    """Random walking and turning with persistence.

    Picks a mode and keeps it for a random stretch: walk forward (the most common, 5-30
    steps), turn left or right (1-8 steps), stand still (1-6 steps) or jump. A walk that
    gets blocked tries, half the time, to jump over the obstacle; otherwise (or if that
    fails too) it turns 45-180 degrees to a random side and walks on.
    """

    MODES = (FORWARD, TURN_LEFT, TURN_RIGHT, NOOP, JUMP, FORWARD_JUMP)
    PROBS = (0.52, 0.15, 0.15, 0.08, 0.05, 0.05)

    def __init__(self, rng: np.random.Generator, turn_deg: float = 15.0):
        self.rng = rng
        self.turn_deg = turn_deg
        self.mode = FORWARD
        self.left = 0
        self.jumped_at_wall = False
        self.then_walk = False

    def _new_mode(self, mode: int | None = None) -> None:
        rng = self.rng
        self.mode = int(rng.choice(self.MODES, p=self.PROBS)) if mode is None else mode
        self.left = {FORWARD: lambda: rng.integers(5, 31), TURN_LEFT: lambda: rng.integers(1, 9),
                     TURN_RIGHT: lambda: rng.integers(1, 9), NOOP: lambda: rng.integers(1, 7),
                     JUMP: lambda: 1, FORWARD_JUMP: lambda: rng.integers(1, 4)}[self.mode]()

    def act(self, pose: tuple[float, float, float], blocked: bool) -> int:
        del pose  # a random walk does not look where it is
        if blocked and self.mode in (FORWARD, FORWARD_JUMP):
            if not self.jumped_at_wall and self.rng.random() < 0.5:
                self.jumped_at_wall = True
                self.mode, self.left = FORWARD_JUMP, 4
            else:
                self.jumped_at_wall = False
                self._new_mode(TURN_LEFT if self.rng.random() < 0.5 else TURN_RIGHT)
                self.left = int(np.ceil(self.rng.uniform(45, 180) / self.turn_deg))
                self.then_walk = True
        if self.left <= 0:
            if self.then_walk:
                self._new_mode(FORWARD)
                self.then_walk = False
            else:
                self._new_mode()
        self.left -= 1
        return self.mode


class ReturnPolicy:
    """Explore like TECO's Minecraft collector, then go back and walk the same path again.

    Exploring (the first `explore` frames): an optional sweep (a full turn on the spot, with
    probability `sweep_prob`), then forward runs of 1-`max_run` steps between turns held for
    `turn_hold` steps (about 100 degrees at 15 degrees a step) to a random side, and now and
    then a pause or a jump. A blocked run jumps once, then turns.

    Returning: the agent picks a frame s of the first half of its exploration (one not far
    from where the agent is), walks straight to where it stood then (jumping ledges, stepping aside round what blocks it), turns to the heading it had,
    and replays its own actions from s on, steering back onto the recorded path when it
    drifts off by more than `tolerance` blocks. At the end of the recorded path it goes back
    again. Headings are always the spawn heading plus whole turns, so the heading at s is
    matched exactly.
    """

    def __init__(self, rng: np.random.Generator, turn_deg: float = 15.0, explore: int = 100,
                 max_run: int = 25, turn_hold_deg: float = 100.0, sweep_prob: float = 0.5,
                 tolerance: float = 0.3):
        self.rng = rng
        self.turn = math.radians(turn_deg)
        self.explore = explore
        self.max_run = max_run
        self.turn_hold = max(1, round(turn_hold_deg / turn_deg))
        self.tolerance = tolerance
        self.plan: list[int] = []  # actions queued while exploring or stepping aside
        if rng.random() < sweep_prob:
            self.plan = [self._random_side()] * round(2 * math.pi / self.turn)
        self.poses: list[tuple[float, float, float]] = []  # poses[t]: where action t was taken
        self.actions: list[int] = []  # actions[t] took poses[t] to poses[t + 1]
        self.mode = "explore"
        self.start = 0    # the frame s being walked to
        self.cursor = 0   # while replaying: the recorded frame whose action comes next
        self.jumped = False
        self.walk_steps = 0

    # ------------------------------------------------------------------ helpers
    def _random_side(self) -> int:
        return TURN_LEFT if self.rng.random() < 0.5 else TURN_RIGHT

    def _turn_towards(self, yaw: float, heading: float) -> int | None:
        """A turn action towards `heading`, or None when within half a turn of it."""
        err = float(wrap_angle(heading - yaw))
        if abs(err) <= self.turn / 2:
            return None
        return TURN_LEFT if err > 0 else TURN_RIGHT

    def _explore_step(self, blocked: bool) -> int:
        rng = self.rng
        if blocked:
            if not self.jumped:
                self.jumped = True
                self.plan = [FORWARD_JUMP] * 3
            else:
                self.jumped = False
                self.plan = [self._random_side()] * self.turn_hold
        if not self.plan:
            u = rng.random()
            if u < 0.55:
                self.plan = [FORWARD] * int(rng.integers(1, self.max_run + 1))
            elif u < 0.9:
                self.plan = [self._random_side()] * self.turn_hold
            elif u < 0.95:
                self.plan = [NOOP] * int(rng.integers(1, 5))
            else:
                self.plan = [JUMP] if rng.random() < 0.5 else [FORWARD_JUMP] * int(rng.integers(1, 4))
        return self.plan.pop(0)

    def _pick_start(self) -> None:
        """The next frame s to walk back to: in the first half of the exploration (so the
        replay is long), preferring poses near the agent (a walk costs about a frame per quarter
        block): s maximises frames replayed - frames walked, with a little noise."""
        end = min(self.explore, len(self.actions))
        x, y, _ = self.poses[-1]
        here = np.array(self.poses[:end // 2 + 1])
        walk = np.hypot(here[:, 0] - x, here[:, 1] - y) / 0.25
        score = (end - np.arange(len(here))) - walk + self.rng.uniform(0, 8, len(here))
        self.start = int(np.argmax(score))
        self.mode, self.walk_steps, self.jumped, self.plan = "goto", 0, False, []

    def _goto_step(self, pose: tuple[float, float, float], blocked: bool) -> int:
        x, y, yaw = pose
        tx, ty, tyaw = self.poses[self.start]
        self.walk_steps += 1
        if self.walk_steps > 200:  # unreachable (walled in by water or trees): pick another
            self._pick_start()
            return NOOP
        if blocked:
            if self.plan and self.plan[0] == FORWARD_JUMP:  # jumping did not help either
                self.plan = []
            if not self.jumped:
                self.jumped = True
                self.plan = [FORWARD_JUMP] * 2
            else:  # step aside: a quarter turn, a few steps, then head for the target again
                self.jumped = False
                side = self._random_side()
                self.plan = [side] * round(math.pi / 2 / self.turn) + [FORWARD] * int(self.rng.integers(3, 9))
        if self.plan:
            return self.plan.pop(0)
        dist = math.hypot(tx - x, ty - y)
        if dist > 0.15:
            turn = self._turn_towards(yaw, math.atan2(ty - y, tx - x))
            if turn is None:
                return FORWARD
            if dist > 0.3:
                return turn
        turn = self._turn_towards(yaw, tyaw)  # there: face the way it faced then
        if turn is not None:
            return turn
        self.mode, self.cursor = "replay", self.start
        return self._replay_step(pose, blocked=False)

    def _replay_step(self, pose: tuple[float, float, float], blocked: bool) -> int:
        x, y, yaw = pose
        end = min(self.explore, len(self.actions))
        if self.cursor >= end:
            self._pick_start()
            return self._goto_step(pose, blocked=False)
        if blocked:  # the recorded step went through here: jump what is in the way, once
            if not self.jumped:
                self.jumped = True
                return FORWARD_JUMP
            self._pick_start()  # still blocked: go back somewhere else
            return self._goto_step(pose, blocked=True)
        self.jumped = False
        px, py, _ = self.poses[self.cursor]
        if math.hypot(px - x, py - y) > self.tolerance:  # drifted off: walk back onto the path
            self.mode = "goto"
            self.start, self.walk_steps = self.cursor, 0
            return self._goto_step(pose, blocked=False)
        action = self.actions[self.cursor]
        self.cursor += 1
        return action

    # ------------------------------------------------------------------ the policy
    def act(self, pose: tuple[float, float, float], blocked: bool) -> int:
        t = len(self.poses)
        self.poses.append(tuple(float(v) for v in pose))
        if self.mode == "explore":
            if t < self.explore:
                action = self._explore_step(blocked)
            else:
                self._pick_start()
                action = self._goto_step(pose, blocked=False)
        elif self.mode == "goto":
            action = self._goto_step(pose, blocked)
        else:
            action = self._replay_step(pose, blocked)
        self.actions.append(action)
        return action
