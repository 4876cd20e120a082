"""``agad review``: the review page, and the same queue from a terminal (list, show, decide)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from agad_stream.cli import args as types
from agad_stream.config import load_settings
from agad_stream.connections import redis_client
from agad_stream.errors import AgadError
from agad_stream.review.decisions import SKIP
from agad_stream.review.labels import LABELS
from agad_stream.review.service import reviewers_from, reviewing_from

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "review",
        help="the operators' review page, or the review queue from a terminal",
        description="Without an action: serve the review page on AGAD_REVIEW__HOST:AGAD_REVIEW__PORT, where "
        "operators signed in with their token (AGAD_REVIEW__REVIEWERS) confirm or reject flagged frames; "
        "each decision is stored as a label record on the labels topic before it leaves the queue. "
        "The actions do the same from a terminal.",
    )
    parser.set_defaults(func=serve)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    serve_parser = actions.add_parser("serve", help="serve the review page (the default)")
    serve_parser.add_argument("--host", help="address to bind (AGAD_REVIEW__HOST)")
    serve_parser.add_argument("--port", type=types.listening_port, help="port (AGAD_REVIEW__PORT)")
    serve_parser.set_defaults(func=serve)
    listing = actions.add_parser("list", help="pending items, highest score first")
    listing.add_argument("--camera", help="only this camera's items")
    types.add_json_flag(listing)
    listing.set_defaults(func=list_items)
    show = actions.add_parser("show", help="one pending item's details (and its image, with --image-out)")
    show.add_argument("frame_id", help="the item's frame_id")
    show.add_argument("--image-out", type=Path, help="write the frame's image bytes to this file")
    types.add_json_flag(show)
    show.set_defaults(func=show_item)
    decide = actions.add_parser(
        "decide", help="decide an item: its label goes to the labels topic, then it leaves the queue"
    )
    decide.add_argument("frame_id", help="the item's frame_id")
    decide.add_argument("--label", required=True, choices=[*LABELS, SKIP], help="anomaly, normal or skip")
    decide.add_argument("--defect", default="", help="defect name of an anomaly (AGAD_REVIEW__DEFECTS)")
    decide.add_argument("--reviewer", required=True, help="your reviewer name (from AGAD_REVIEW__REVIEWERS)")
    types.add_json_flag(decide)
    decide.set_defaults(func=decide_item)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from agad_stream.review.auth import Sessions
    from agad_stream.review.web import create_app

    settings = load_settings()
    review = settings.review
    reviewers = reviewers_from(settings)
    client = redis_client(settings)
    reviewing = reviewing_from(settings, client)
    reviewing.refresh()
    sessions = Sessions(client, settings.redis.key_prefix, review.session_hours * 3600)
    app = create_app(reviewing, sessions, reviewers, secure_cookies=review.secure_cookies)
    host, port = getattr(args, "host", None) or review.host, getattr(args, "port", None) or review.port
    log.info("review page on http://%s:%d/ for %s", host, port, ", ".join(sorted(reviewers.names)))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        reviewing.producer.close(timeout=10)
        client.close()
    return 0


def list_items(args: argparse.Namespace) -> int:
    settings = load_settings()
    reviewing = reviewing_from(settings, redis_client(settings))
    reviewing.refresh()
    items = reviewing.store.pending(args.camera)
    if args.json:
        print(json.dumps([item.__dict__ for item in items], indent=2))
        return 0
    print(f"{len(items)} pending{f' for {args.camera}' if args.camera else ''}")
    for item in items:
        owner = f"open by {item.owner}" if item.owner else "waiting"
        print(
            f"  {item.score:>10.4g} / {item.threshold:<8.4g} {item.camera_id:<10} {item.frame_id}  ({owner})"
        )
    return 0


def show_item(args: argparse.Namespace) -> int:
    settings = load_settings()
    reviewing = reviewing_from(settings, redis_client(settings))
    item = reviewing.store.get(args.frame_id)
    if item is None:
        raise AgadError(f"{args.frame_id} is not in the review queue (decided, expired or never flagged)")
    if args.image_out:
        args.image_out.write_bytes(item.image)
    details = {**item.summary.__dict__, "content_type": item.content_type, "image_bytes": len(item.image)}
    if args.json:
        print(json.dumps(details, indent=2))
    else:
        for key, value in details.items():
            print(f"{key:<14} {value}")
    return 0


def decide_item(args: argparse.Namespace) -> int:
    settings = load_settings()
    names = reviewers_from(settings).names
    if args.reviewer not in names:
        raise AgadError(
            f"--reviewer {args.reviewer!r} is not one of AGAD_REVIEW__REVIEWERS ({', '.join(sorted(names))})"
        )
    reviewing = reviewing_from(settings, redis_client(settings))
    try:
        outcome = reviewing.decide(args.frame_id, args.reviewer, args.label, args.defect)
    finally:
        reviewing.producer.close(timeout=10)
    if args.json:
        print(json.dumps(outcome.__dict__))
    elif outcome.label == SKIP:
        print(f"{args.frame_id}: skipped, back in the queue")
    else:
        print(f"{args.frame_id}: {outcome.label}{f' ({outcome.defect})' if outcome.defect else ''} saved")
    return 0
