"""The drag-and-drop page, driven in headless Chromium against a live ``maskingnet serve``.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages ending
in a NUL byte on file descriptors 3 and 4), so no driver, no websocket library and no network are needed.
Debian's ``chromium`` package is required; ``make test`` installs it. Without it this test FAILS on purpose.

``python tests/e2e/test_web.py CHECKPOINT PHOTO... --out docs/serve_page.png`` takes the README screenshot.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
WAIT_LIMIT_S = 120.0


def find_chromium() -> str | None:
    override = os.environ.get("MASKINGNET_CHROMIUM")
    if override:
        return shutil.which(override)
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Chromium:
    """A headless Chromium with one page, spoken to over the DevTools pipe."""

    def __init__(self, executable: str, width: int = 1200, height: int = 860) -> None:
        self.profile = tempfile.TemporaryDirectory(prefix="maskingnet-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def give_pipes_fds_3_and_4() -> None:
            """In the child: the browser reads commands on fd 3 and writes replies on fd 4."""
            read_end = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile.name}", "about:blank"]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=give_pipes_fds_3_and_4,
            close_fds=False,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str):
        result = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("document.readyState === 'complete' && !!document.getElementById('files')")

    def wait_for(self, expression: str, limit_s: float = WAIT_LIMIT_S):
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"page never satisfied: {expression}")

    def set_files(self, selector: str, paths: list[Path]) -> None:
        """What a user's file chooser does: put files into an ``<input type=file>`` (fires ``change``)."""
        expression = f"document.querySelector({selector!r})"
        found = self.call("Runtime.evaluate", session=True, expression=expression)
        self.call(
            "DOM.setFileInputFiles",
            session=True,
            files=[str(Path(p).resolve()) for p in paths],
            objectId=found["result"]["objectId"],
        )

    def drop_file(self, selector: str, name: str, data: bytes, mime: str = "image/jpeg") -> None:
        """What a user's drag-and-drop does: a ``drop`` event whose DataTransfer carries the file."""
        payload = base64.b64encode(data).decode()
        self.evaluate(
            f"""(() => {{
              const bytes = Uint8Array.from(atob({payload!r}), (c) => c.charCodeAt(0));
              const transfer = new DataTransfer();
              transfer.items.add(new File([bytes], {name!r}, {{ type: {mime!r} }}));
              const target = document.querySelector({selector!r});
              target.dispatchEvent(new DragEvent("dragenter", {{ dataTransfer: transfer, bubbles: true }}));
              target.dispatchEvent(new DragEvent("drop", {{ dataTransfer: transfer, bubbles: true }}));
              return true;
            }})()"""
        )

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        self.profile.cleanup()


CARDS = """JSON.stringify([...document.querySelectorAll('.card')].map((card) => ({
  name: card.querySelector('.name').textContent,
  state: card.dataset.state || 'pending',
  status: card.querySelector('.status').textContent,
  width: card.querySelector('img.cutout') ? card.querySelector('img.cutout').naturalWidth : 0,
  height: card.querySelector('img.cutout') ? card.querySelector('img.cutout').naturalHeight : 0,
  download: card.querySelector('a.download') ? card.querySelector('a.download').download : null,
})))"""


def cards(browser: Chromium) -> list[dict]:
    return json.loads(browser.evaluate(CARDS))


def wait_for_cards(browser: Chromium, count: int) -> list[dict]:
    browser.wait_for(
        f"(() => {{ const c = [...document.querySelectorAll('.card')];"
        f" return c.length >= {count} && c.every((x) => x.dataset.state); }})()"
    )
    return cards(browser)


def make_checkpoint(path: Path) -> Path:
    import torch

    from maskingnet.models import create_model, save_model

    torch.manual_seed(0)
    return save_model(create_model("maskingnet", width=0.125), path, meta={"input_size": [64, 48]})


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            "headless Chromium is required for the page test and was not found "
            f"(looked for {', '.join(CHROMIUM_NAMES)}; set MASKINGNET_CHROMIUM to its path). "
            "Install Debian's package: apt-get install -y chromium (make test does this)."
        )
    chromium = Chromium(executable)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, start_server) -> str:
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("web") / "tiny.safetensors")
    _, host, port = start_server(checkpoint)
    return f"http://{host}:{port}/"


@pytest.fixture(scope="module")
def small_photo(real_sample, tmp_path_factory) -> Path:
    """One real Carvana photo, shrunk to 480x320 so the round trip stays quick."""
    source = sorted((real_sample / "train").glob("*_02.jpg"))[0]
    out = tmp_path_factory.mktemp("photos") / "car_02.jpg"
    with Image.open(source) as image:
        image.convert("RGB").resize((480, 320), Image.Resampling.BILINEAR).save(out, quality=90)
    return out


def test_choosing_a_photo_shows_its_cutout_at_the_photo_size(browser, page_url, small_photo):
    browser.open(page_url)
    browser.set_files("#files", [small_photo])
    [card] = wait_for_cards(browser, 1)
    assert card["state"] == "done", card["status"]
    assert (card["width"], card["height"]) == (480, 320)
    assert card["download"] == "car_02_cutout.png"


def test_dropping_a_photo_shows_its_cutout(browser, page_url, small_photo):
    browser.open(page_url)
    data = small_photo.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        expected = image.size
    browser.drop_file("#drop", "dropped.jpg", data)
    [card] = wait_for_cards(browser, 1)
    assert card["state"] == "done", card["status"]
    assert (card["width"], card["height"]) == expected


def test_the_page_asks_for_webp_on_a_canvas(browser, page_url, small_photo):
    browser.open(page_url)
    browser.evaluate('document.getElementById("format").value = "webp"')
    browser.evaluate('document.getElementById("canvas").value = "200x150"')
    browser.set_files("#files", [small_photo])
    [card] = wait_for_cards(browser, 1)
    assert card["state"] == "done", card["status"]
    assert (card["width"], card["height"]) == (200, 150)
    assert card["download"] == "car_02_cutout.webp"


def test_a_file_that_is_not_an_image_shows_the_servers_reason(browser, page_url):
    browser.open(page_url)
    browser.drop_file("#drop", "notes.jpg", b"not a photo at all" * 20)
    [card] = wait_for_cards(browser, 1)
    assert card["state"] == "error"
    assert "415" in card["status"]


def wait_until_healthy(url: str) -> None:
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(url + "healthz", timeout=10):
                return
        except OSError:
            time.sleep(0.2)


def main(argv: list[str]) -> None:
    """Screenshot of the page with cut-outs of the given photos (for the README)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("photos", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=Path("docs/serve_page.png"))
    args = parser.parse_args(argv)
    log = tempfile.NamedTemporaryFile(prefix="serve-", suffix=".log", delete=False)
    command = [sys.executable, "-m", "maskingnet", "serve", "-m", str(args.checkpoint), "--port", "0"]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        text = ""
        while "http://" not in text:
            time.sleep(0.5)
            text = Path(log.name).read_text()
        url = "http://" + text.split("http://", 1)[1].split()[0] + "/"
        wait_until_healthy(url)
        chromium = Chromium(find_chromium() or "chromium", height=470)
        try:
            chromium.open(url)
            chromium.set_files("#files", args.photos)
            wait_for_cards(chromium, len(args.photos))
            from maskingnet.utils import atomic_write

            with atomic_write(args.out) as handle:
                handle.write(chromium.screenshot())
        finally:
            chromium.close()
    finally:
        server.terminate()
        server.wait()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main(sys.argv[1:])
