"""Browser check of the code location: sync the samples, start `dagster dev` on the embedded
default, load the UI in headless Chromium, check that assets, checks and partitions are shown,
and keep a screenshot.

    python scripts/ui_check.py [--screenshot docs/dagster_ui.png]

Needs Debian's `chromium` package (`apt-get install chromium`). Exits non-zero if the UI does
not show what it should.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("chromium not found: apt-get install chromium")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-"), "--window-size=1600,1000",
        "--virtual-time-budget=20000",
    ]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", default=str(REPO / "docs" / "dagster_ui.png"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dq-ui-"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "DQ_DATA_DIR": str(work / "data"), "DQ_CATALOG_DIR": str(REPO / "catalogs")}

    subprocess.run([str(BIN / "dq-pipeline"), "sync"], env=env, check=True, cwd=REPO)
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=open(work / "dagster.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(base + "/server_info", timeout=5)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    print((work / "dagster.log").read_text()[-3000:])
                    return 1
                time.sleep(2)
        time.sleep(5)  # let the code server load the location
        # Dismiss the first-visit community dialog, as a user clicking "Skip" would.
        request = urllib.request.Request(
            base + "/graphql", data=b'{"query": "mutation { setNuxSeen }"}', headers={"Content-Type": "application/json"}
        )
        urllib.request.urlopen(request, timeout=30).read()

        page = f"{base}/assets/catalog_index"
        dom = chromium("--dump-dom", page).stdout
        expected = ["catalog_index", "ids_match", "crm/customers", "catalog_entries"]
        checks = chromium("--dump-dom", f"{base}/assets/catalog_index?view=checks").stdout
        partitions = chromium("--dump-dom", f"{base}/assets/catalog_index?view=partitions").stdout
        found = {name: name in dom + checks + partitions for name in expected}
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        chromium(f"--screenshot={args.screenshot}", f"{base}/asset-groups")
        print({"page": page, "found": found, "screenshot": args.screenshot})
        return 0 if all(found.values()) else 1
    finally:
        os.killpg(server.pid, signal.SIGKILL)  # `dagster dev` ignores SIGTERM from a non-interactive shell
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
