"""Play mode: the engine against rollouts, recordings, errors, and the page in a real browser
(headless Chromium from Debian's packages, driven by selenium; skipped, with the reason, without it)."""

from __future__ import annotations

import io
import json
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from teco_jax import rollout as rollout_lib
from teco_jax.errors import UserError
from teco_jax.play import engine as play_engine
from teco_jax.play import server as play_server

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "checkpoints" / "maze_smooth"
CONTEXT = 8


@pytest.fixture(scope="module")
def demo():
    """The demo world model, two CPU-maze episodes and their action names."""
    from teco_jax.play.__main__ import maze_episodes
    from teco_jax.world_model import WorldModel

    wm = WorldModel.load(DEMO)
    episodes, names = maze_episodes(wm, 2, seed=0)
    return wm, episodes, names


# ------------------------------------------------------------------------------ engine
def test_a_session_generates_what_a_rollout_generates_also_past_the_window(demo):
    """With a key-independent sampler (confidence, temperature 0), a session's frames equal those
    of `rollout.rollout` (one jitted scan) for the same context and actions, also after the
    window has slid; "no action" is TECO's null action."""
    wm, episodes, names = demo
    greedy = rollout_lib.Sampler(schedule="confidence", confidence_steps=4, temperature=0.0, choice_temperature=0.0)
    context, steps = wm.window - 3, 6
    session = play_engine.Session(play_engine.Engine(wm, names, context=context, sampler=greedy), episodes[0], "s")
    actions = np.random.default_rng(0).integers(0, wm.num_actions + 1, steps)
    for a in actions:
        session.step(int(a))
    ep = episodes[0]
    all_actions = np.concatenate([ep.actions[:context], actions])[None].astype(np.int32)
    codes = rollout_lib.rollout(wm.teco, wm.vq_embeddings, jnp.asarray(wm.encode(ep.frames[None, :context])),
                                jnp.asarray(all_actions), jax.random.key(0), num_frames=context + steps,
                                window=wm.window, sampler=greedy)
    assert len(session.frames) == context + steps > wm.window  # the window slid
    np.testing.assert_array_equal(np.stack(session.codes), np.asarray(codes)[0, context:])
    pixels = wm.decode(np.asarray(codes)[:, context:])[0]  # one frame per call vs 6: float sums may round apart
    assert np.max(np.abs(np.stack(session.frames[context:]).astype(int) - pixels.astype(int))) <= 1
    assert [e["action"] for e in session.log] == actions.tolist()
    assert [e["name"] for e in session.log] == [names[a] if a < len(names) else "no action" for a in actions]


def test_reset_restores_the_context_and_replays_exactly(demo):
    wm, episodes, names = demo
    session = play_engine.Session(play_engine.Engine(wm, names, context=CONTEXT), episodes[1], "s")
    first = [session.step(a).copy() for a in (0, 0, 4)]
    session.reset(episodes[1])
    assert len(session.frames) == CONTEXT and session.log == []
    np.testing.assert_array_equal(session.frames[-1], episodes[1].frames[CONTEXT - 1])
    again = [session.step(a) for a in (0, 0, 4)]  # frame t uses key fold_in(seed, t): the same frames
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_recordings_frame_context_green_and_generated_red(demo):
    wm, episodes, names = demo
    session = play_engine.Session(play_engine.Engine(wm, names, context=CONTEXT), episodes[0], "s")
    for a in (0, 5):
        session.step(a)
    gif = Image.open(io.BytesIO(session.recording(fmt="gif")))
    assert gif.n_frames == CONTEXT + 2
    gif.seek(0)
    assert gif.convert("RGB").getpixel((0, 0)) == play_engine.CONTEXT_COLOR
    gif.seek(CONTEXT)
    assert gif.convert("RGB").getpixel((0, 0)) == play_engine.GENERATED_COLOR
    assert session.recording(fmt="mp4")[4:8] == b"ftyp"  # an MP4 container
    with pytest.raises(ValueError, match="unknown recording format"):
        session.recording(fmt="avi")


def test_key_map_covers_every_action():
    from data_gen import maze, voxel

    for names in (maze.ACTIONS, voxel.ACTIONS, ("a", "b")):
        keys = play_server.key_map(tuple(names) + ("no action",))
        assert set(keys.values()) == set(range(len(names) + 1))  # every action and "no action" has a key
    keys = play_server.key_map(maze.ACTIONS + ("no action",))
    assert keys["ArrowUp"] == keys["w"] == maze.FORWARD and keys["ArrowLeft"] == maze.TURN_LEFT
    assert keys[" "] == len(maze.ACTIONS)


# ------------------------------------------------------------------------------ errors
def test_a_port_in_use_is_a_one_line_error(demo):
    wm, episodes, names = demo
    app = play_server.PlayApp(play_engine.Engine(wm, names, context=CONTEXT), episodes)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=rf"port {port} on 127.0.0.1 is in use: pass --port"):
            play_server.serve(app, "127.0.0.1", port)


def test_a_dataset_that_does_not_fit_the_model_is_refused(tmp_path, demo):
    from teco_jax.data import tfds_write
    from teco_jax.play.__main__ import dataset_episodes
    from tests.helpers.episodes import write_episodes

    wm = demo[0]
    write_episodes(tmp_path / "src", {"test": 1}, size=16)  # 16x16 frames; the model takes 32x32
    tfds_write.build_from_episodes(tmp_path / "src", tmp_path / "tfds", name="small", num_actions=6)
    with pytest.raises(UserError, match=r"has \(16, 16, 3\) frames, but the model takes \(32, 32, 3\)"):
        dataset_episodes(wm, str(tmp_path / "tfds"), "test", 4)
    write_episodes(tmp_path / "src9", {"test": 1}, size=32, num_actions=9)
    tfds_write.build_from_episodes(tmp_path / "src9", tmp_path / "tfds9", name="nine", num_actions=9)
    with pytest.raises(UserError, match="the dataset has 9 actions"):
        dataset_episodes(wm, str(tmp_path / "tfds9"), "test", 4)


def test_cli_bad_checkpoint_is_one_line(tmp_path):
    from teco_jax.play.__main__ import main

    assert main(["--checkpoint", str(tmp_path / "nope")]) == 1
    (tmp_path / "empty").mkdir()
    assert main(["--checkpoint", str(tmp_path / "empty")]) == 1


def test_the_api_answers_bad_requests_with_errors(demo):
    wm, episodes, names = demo
    app = play_server.PlayApp(play_engine.Engine(wm, names, context=CONTEXT), episodes)
    server = play_server.serve(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _post(base, "/api/step", {"session": "nope", "action": 0})[0] == 410
        sid = _post(base, "/api/session", {"episode": 0})[1]["session"]
        assert _post(base, "/api/step", {"session": sid, "action": 99})[0] == 400
        assert _post(base, "/api/reset", {"session": sid, "episode": 7})[0] == 400
        assert _post(base, "/api/close", {"session": sid})[0] == 200 and not app.sessions
    finally:
        server.shutdown()


def _post(base: str, path: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------ the browser
def _chrome():
    """A headless Chromium driven by Debian's chromedriver, or a skip saying what is missing."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no Chromium: install Debian's chromium and chromium-driver (.ci/run does) for the browser test")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,720"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_the_page_in_a_real_browser(demo, tmp_path):
    """Load the page, press keys, check frames change and the server logged the keys' actions,
    reset, record, a second tab gets its own session, closing a tab frees its session; save a
    screenshot."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wm, episodes, names = demo
    app = play_server.PlayApp(play_engine.Engine(wm, names, context=CONTEXT), episodes)
    server = play_server.serve(app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    browser = _chrome()
    wait = WebDriverWait(browser, 60)
    try:
        browser.get(url)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        frame = browser.find_element(By.ID, "frame")
        assert frame.get_attribute("data-index") == str(CONTEXT - 1)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#context img")) == CONTEXT
        start_src = frame.get_attribute("src")
        sid = browser.find_element(By.TAG_NAME, "body").get_attribute("data-session")

        body = browser.find_element(By.TAG_NAME, "body")
        pressed = [Keys.ARROW_UP, "w", Keys.ARROW_LEFT, "d", " "]
        seen = set()
        for i, key in enumerate(pressed):
            body.send_keys(key)
            wait.until(lambda b: frame.get_attribute("data-index") == str(CONTEXT + i))
            seen.add(frame.get_attribute("src"))
            assert "generated" in frame.get_attribute("class")
        assert start_src not in seen and len(seen) >= 2  # the frames change
        log = app.sessions[sid].log
        assert [e["action"] for e in log] == [0, 0, 4, 5, len(names)]  # forward, forward, left, right, none
        assert browser.find_element(By.ID, "action").text == "no action"
        assert browser.find_element(By.ID, "index").text == str(CONTEXT + len(pressed) - 1)
        assert "frames/s" in browser.find_element(By.ID, "fps").text

        shot = tmp_path / "play.png"
        browser.save_screenshot(str(shot))
        assert Image.open(shot).size[0] > 500

        body.send_keys(Keys.ESCAPE)  # reset: back to the last context frame, the log emptied
        wait.until(lambda b: frame.get_attribute("data-index") == str(CONTEXT - 1))
        assert frame.get_attribute("src") == start_src and app.sessions[sid].log == []

        with urllib.request.urlopen(f"{url}api/record?session={sid}&format=gif", timeout=60) as r:
            assert r.headers["Content-Disposition"].startswith("attachment") and r.read(6) == b"GIF89a"

        browser.switch_to.new_window("tab")  # a second tab: its own session
        browser.get(url)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert len(app.sessions) == 2
        browser.get("about:blank")  # leaving the page closes its session
        deadline = time.time() + 10
        while len(app.sessions) != 1 and time.time() < deadline:
            time.sleep(0.1)
        assert list(app.sessions) == [sid]
    finally:
        browser.quit()
        server.shutdown()
