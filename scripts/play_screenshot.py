"""The screenshot of play mode in the README and docs/play.md: the demo checkpoint, a few key presses.

    python scripts/play_screenshot.py [--out docs/play.png]

Needs Debian's chromium and chromium-driver, and selenium (the test extra).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "docs" / "play.png"))
    parser.add_argument("--keys", default="wwwwaaawwwdd", help="keys to press (w a s d q e, space)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from teco_jax.play.__main__ import maze_episodes
    from teco_jax.play.engine import Engine, Session
    from teco_jax.play.server import PlayApp, serve
    from teco_jax.world_model import WorldModel

    wm = WorldModel.load(ROOT / "checkpoints" / "maze_smooth")
    episodes, names = maze_episodes(wm, 4, seed=0)
    engine = Engine(wm, names, context=16)
    Session(engine, episodes[0], "warmup").step(0)  # compile first, as the CLI does
    server = serve(PlayApp(engine, episodes, seed=1), "127.0.0.1", 0)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,640"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        body, frame = browser.find_element(By.TAG_NAME, "body"), browser.find_element(By.ID, "frame")
        for i, key in enumerate(args.keys):
            body.send_keys(key)
            wait.until(lambda b: frame.get_attribute("data-index") == str(16 + i))
        browser.save_screenshot(args.out)
    finally:
        browser.quit()
        server.shutdown()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
