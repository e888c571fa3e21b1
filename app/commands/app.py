"""`glasshouse app`: start the Streamlit app (app/streamlit_app.py), headless, on a chosen port.

It runs `streamlit run app/streamlit_app.py` in this process with the flags below, after starting
to load the default model in the background so the first page opens on a warm model.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from app.commands._common import add_device_args, int_range
from probes.model.model_specs import DEFAULT_MODEL

APP_PATH = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("app", help="start the Streamlit app in a browser (default model: the embedded one)")
    p.add_argument("--port", type=int_range(1, 65535), default=8501, help="port to serve on")
    p.add_argument("--address", default="localhost",
                   help="address to listen on (default localhost; 0.0.0.0 to serve other machines)")
    p.add_argument("--browser", action="store_true", help="open a browser tab (default: headless, print the URL)")
    p.add_argument("--model", default=DEFAULT_MODEL, help="model the sidebar starts with")
    add_device_args(p)
    p.add_argument("--no-prewarm", action="store_true", help="do not load the model before the first page opens")
    p.set_defaults(func=run_app)


def streamlit_argv(args: argparse.Namespace) -> list[str]:
    """The `streamlit run` command line this starts (printed, so it can be run by hand too)."""
    argv = [
        "streamlit", "run", str(APP_PATH),
        "--server.headless", "false" if args.browser else "true",
        "--server.port", str(args.port),
        "--server.address", args.address,
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "light",
        "--client.toolbarMode", "minimal",
        "--", "--model", args.model, "--dtype", args.dtype,
    ]
    if args.device:
        argv += ["--device", args.device]
    return argv


def run_app(args: argparse.Namespace) -> int:
    from app.commands._common import check_device
    from probes.extras import require_extra

    streamlit_cli = require_extra("streamlit.web.cli", "app", "glasshouse app")
    from app.ui import prewarm
    from app.ui.sidebar import devices

    check_device(args.device)
    argv = streamlit_argv(args)
    print(f"glasshouse app: http://{args.address}:{args.port}  ({shlex.join(argv)})", flush=True)
    if not args.no_prewarm:
        prewarm.start(args.model, args.device or devices()[0], args.dtype)
    sys.argv = argv
    try:
        streamlit_cli.main()
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
